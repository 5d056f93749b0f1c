"""Train a segmentor: python tools/train.py experiment=cityscapes_ann [key=value ...]"""

import hydra
from omegaconf import DictConfig

from ann.cli import friendly_errors, quote_path_argv, set_output_dir
from ann.commands.overrides import zoo_experiment_argv
from ann.commands.train import train


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
@friendly_errors
def main(cfg: DictConfig) -> None:
    set_output_dir(cfg)
    train(cfg)


if __name__ == "__main__":
    quote_path_argv()  # a sweep folder's "=" in checkpoint=... needs no quotes
    zoo_experiment_argv()  # checkpoint=zoo:NAME: experiment= defaults to the entry's
    main()
