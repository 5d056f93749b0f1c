"""Predict images and write colour masks and overlays.

  python tools/infer.py checkpoint=outputs/demo/checkpoints/best.pth input=photo.png
  python tools/infer.py experiment=cityscapes_ann checkpoint=best.pth input='frames/*.png'
  python tools/infer.py experiment=cityscapes_ann checkpoint=best.pth input=dir/ evaluator=slide

Required: checkpoint=PATH and input=IMAGE|DIR|GLOB. Results go to outputs/<name>/infer/.
"""

import hydra
from omegaconf import DictConfig

from ann.cli import friendly_errors, prepare_argv, set_output_dir
from ann.commands.infer import infer
from ann.commands.overrides import command_line_overrides


@hydra.main(version_base="1.3", config_path="../configs", config_name="infer")
@friendly_errors
def main(cfg: DictConfig) -> None:
    set_output_dir(cfg)
    infer(cfg, command_line_overrides())  # no experiment=: the checkpoint's config


if __name__ == "__main__":
    prepare_argv(__file__, "infer", __doc__)
    main()
