"""Evaluate a checkpoint on a dataset split: mIoU, per-class table, metrics.json.

  python tools/eval.py checkpoint=outputs/demo/checkpoints/best.pth
  python tools/eval.py experiment=cityscapes_ann checkpoint=best.pth evaluator=slide
  python tools/eval.py experiment=cityscapes_ann checkpoint=best.pth evaluator=ms_flip
  python tools/eval.py experiment=cityscapes_ann checkpoint=best.pth evaluator.save_predictions=cityscapes

Required: checkpoint=PATH. experiment=NAME chooses the dataset and model
(a trained checkpoint's own config is used otherwise).
"""

import hydra
from omegaconf import DictConfig

from ann.cli import friendly_errors, prepare_argv, set_output_dir
from ann.commands.eval import evaluate
from ann.commands.overrides import command_line_overrides


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
@friendly_errors
def main(cfg: DictConfig) -> None:
    set_output_dir(cfg)
    evaluate(cfg, command_line_overrides())  # no experiment=: the checkpoint's config


if __name__ == "__main__":
    prepare_argv(__file__, "eval", __doc__)
    main()
