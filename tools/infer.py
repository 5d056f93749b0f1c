"""Predict images: python tools/infer.py experiment=NAME checkpoint=PATH input=IMG|DIR|GLOB [key=value ...]"""

import hydra
from omegaconf import DictConfig

from ann.cli import friendly_errors, quote_path_argv, set_output_dir
from ann.commands.infer import infer
from ann.commands.overrides import command_line_overrides, zoo_experiment_argv


@hydra.main(version_base="1.3", config_path="../configs", config_name="infer")
@friendly_errors
def main(cfg: DictConfig) -> None:
    set_output_dir(cfg)
    infer(cfg, command_line_overrides())  # no experiment=: the checkpoint's config


if __name__ == "__main__":
    quote_path_argv()  # a sweep folder's "=" in checkpoint=... needs no quotes
    zoo_experiment_argv()  # checkpoint=zoo:NAME: experiment= defaults to the entry's
    main()
