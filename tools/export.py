"""Export a checkpoint to ONNX (dynamic height and width by default).

  python tools/export.py checkpoint=outputs/demo/checkpoints/best.pth
  python tools/export.py experiment=cityscapes_ann checkpoint=best.pth export.dynamic=false export.height=1024 export.width=2048

Required: checkpoint=PATH. The .onnx file goes to outputs/<name>/export/.
"""

import hydra
from omegaconf import DictConfig

from ann.cli import friendly_errors, prepare_argv, set_output_dir
from ann.commands.export import export_onnx
from ann.commands.overrides import command_line_overrides


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
@friendly_errors
def main(cfg: DictConfig) -> None:
    set_output_dir(cfg)
    export_onnx(cfg, command_line_overrides())  # no experiment=: the checkpoint's config


if __name__ == "__main__":
    prepare_argv(__file__, "export", __doc__)
    main()
