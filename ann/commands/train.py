"""``tools/train.py``: train the model a config describes (docs: README "Train")."""

from __future__ import annotations

from omegaconf import DictConfig

from ann import dist
from ann.engine.trainer import Trainer
from ann.hub.zoo import PREFIX, pretrained_checkpoint


def train(cfg: DictConfig) -> dict:
    """Trains the model ``cfg`` describes; returns the last validation metrics.

    Resumes from ``<output_dir>/checkpoints/last.pth`` when ``trainer.resume``.
    """
    load_from = cfg.trainer.get("load_from")
    if isinstance(load_from, str) and load_from.startswith(PREFIX):
        # A published model: downloaded and converted once, then a file like any other.
        cfg.trainer.load_from = str(pretrained_checkpoint(load_from, "trainer.load_from"))
    try:
        with dist.rank_failures("trainer.dist_timeout_min"):
            return Trainer(cfg).run()
    finally:
        dist.cleanup()


__all__ = ["train"]
