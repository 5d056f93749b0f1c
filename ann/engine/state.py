"""The one object a training run advances: :class:`TrainState` holds the
parts a step needs (model, optimizer, schedule, scaler, its options) and the
counters a checkpoint saves (iteration, best mIoU), and converts itself to
and from a checkpoint dict. :class:`Step` is what one iteration hands to the
hooks (:mod:`ann.engine.hooks`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from ann import dist
from ann.engine.build import Training
from ann.engine.checkpoint import rng_state, set_rng_state
from ann.speed import unwrap


@dataclass
class TrainState(Training):
    """:class:`~ann.engine.build.Training` (``model`` is the module the loop
    steps: wrapped in DDP and compiled where asked; :func:`unwrap` gives the
    plain one) plus the loop's counters.

    ``iteration`` counts finished optimizer steps; ``start_iter`` is where this
    process started (0, or the resumed checkpoint's iteration); ``saved_iter``
    the iteration of the newest checkpoint on disk (None: none yet);
    ``metrics`` the last validation's metrics.
    """

    iteration: int = 0
    start_iter: int = 0
    best_miou: float = -1.0
    saved_iter: int | None = None
    metrics: dict = field(default_factory=dict)

    @classmethod
    def from_training(cls, parts: Training) -> TrainState:
        return cls(**{f.name: getattr(parts, f.name) for f in dataclasses.fields(Training)})

    def to_checkpoint(self, config: dict) -> dict[str, Any]:
        """The checkpoint dict of this state (DESIGN §5: model, optimizer,
        scheduler, scaler, iteration, best_mIoU, config, rng). Collective under
        DDP: every rank calls it, as the RNG states of all ranks are gathered."""
        rngs: Any = rng_state()
        if dist.get_world_size() > 1:
            rngs = [None] * dist.get_world_size()
            torch.distributed.all_gather_object(rngs, rng_state())
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "best_mIoU": self.best_miou,
            "config": config,
            "rng": rngs,
        }

    def load_checkpoint(self, ckpt: dict[str, Any]) -> None:
        """Restores what :meth:`to_checkpoint` saved, but the model weights
        (loaded before, with their own checks) and the config; this rank's
        RNG state where every rank's was saved."""
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.iteration = self.start_iter = self.saved_iter = int(ckpt["iteration"])
        self.best_miou = float(ckpt["best_mIoU"])
        rngs = ckpt["rng"]
        set_rng_state(rngs[dist.get_rank()] if isinstance(rngs, list) else rngs)


@dataclass
class Step:
    """One finished iteration, as the hooks see it (they run in order and may
    fill the last three fields for the hooks after them).

    losses: the loss terms (0-d tensors averaged over accumulated batches and
    ranks, on the CPU); ``metrics``: the validation run after this step (else
    None); ``is_best``: that validation beat every earlier one; ``stop``: a
    signal asked the run to stop after this step (saved first).
    """

    iteration: int
    max_iters: int
    losses: dict[str, torch.Tensor]
    lr: float
    step_time: float
    data_time: float
    metrics: dict | None = None
    is_best: bool = False
    stop: bool = False

    @property
    def loss(self) -> float:
        return float(self.losses["loss"])

    @property
    def last(self) -> bool:
        return self.iteration == self.max_iters


__all__ = ["Step", "TrainState"]
