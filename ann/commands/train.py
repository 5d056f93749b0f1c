"""``tools/train.py``: train the model a config describes (docs: README "Train")."""

from __future__ import annotations

from omegaconf import DictConfig

from ann import dist
from ann.engine.trainer import Trainer


def train(cfg: DictConfig) -> dict:
    """Trains the model ``cfg`` describes; returns the last validation metrics.

    Resumes from ``<output_dir>/checkpoints/last.pth`` when ``trainer.resume``.
    """
    try:
        with dist.rank_failures("trainer.dist_timeout_min"):
            return Trainer(cfg).run()
    finally:
        dist.cleanup()


__all__ = ["train"]
