"""Train a segmentation model from a recipe in configs/experiment/.

  python tools/train.py experiment=demo
  python tools/train.py experiment=cityscapes_ann dataset.root=/data/cityscapes
  python tools/train.py experiment=cityscapes_ann name=cs_lr02 optimizer.lr=0.02
  torchrun --nproc_per_node=4 tools/train.py experiment=cityscapes_ann

Required: experiment=NAME. The run goes to outputs/<name>/ (name defaults to
the experiment's); re-running the same command resumes it, and a re-run with
another training config stops with the keys that differ (name=NEW for a new
run, trainer.resume=force to continue on purpose).
"""

import hydra
from omegaconf import DictConfig

from ann.cli import friendly_errors, prepare_argv, set_output_dir
from ann.commands.train import train


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
@friendly_errors
def main(cfg: DictConfig) -> None:
    set_output_dir(cfg)
    train(cfg)


if __name__ == "__main__":
    prepare_argv(__file__, "train", __doc__)
    main()
