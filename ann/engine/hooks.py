"""Hooks: what a training run does around its steps, one job each.

:class:`~ann.engine.trainer.Trainer` calls every hook's :meth:`Hook.before_train`
once, :meth:`Hook.after_step` after each optimizer step (in list order, each
seeing what the earlier ones filled into the :class:`~ann.engine.state.Step`),
:meth:`Hook.after_validation` after each validation, and
:meth:`Hook.after_train` on every exit, an error's too, in list order (the
writer is closed before the signal hook hands SIGUSR2 on).

The built-in hooks, in their order: :class:`ProgressHook` (progress bar on a
terminal, a log line every ``trainer.log_interval``), :class:`TensorBoardHook`
(the event files under ``tb/``), :class:`EvaluationHook` (validation every
``trainer.val_interval`` and at the end, best mIoU, metrics.json and
metrics.jsonl), :class:`SignalHook` (SIGTERM, SIGINT, SLURM's SIGUSR2: stop
after this step) and :class:`CheckpointHook` (saves). A user's own hooks
follow them, from the config::

    trainer:
      hooks:
        - _target_: my_package.MyLogger   # a subclass of ann.engine.hooks.Hook
          every: 10                        # its own arguments

Hooks must not draw random numbers on the training streams (exact resume).
"""

from __future__ import annotations

import json
import logging
import resource
import sys
from pathlib import Path
from typing import Any, Protocol

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.data import Dataset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ann import dist
from ann import metric_names as names
from ann.engine.signals import SignalGuard
from ann.engine.state import Step, TrainState
from ann.errors import ConfigError
from ann.evaluation.evaluator import write_metrics
from ann.evaluation.metrics import format_table
from ann.speed import unwrap
from ann.visualization.masks import prediction_grid

log = logging.getLogger(__name__)


class TrainerView(Protocol):
    """What a hook may use of :class:`ann.engine.trainer.Trainer`."""

    cfg: DictConfig
    state: TrainState
    out_dir: Path
    ckpt_dir: Path
    device: torch.device
    val_set: Dataset

    def validate(self, iteration: int) -> dict[str, Any]: ...

    def save(self, iteration: int, best: bool = False) -> None: ...


class Hook:
    """A no-op at every point of the loop; a hook overrides what it needs.

    ``trainer`` gives the run: ``trainer.state`` (model, optimizer, iteration,
    best mIoU ...), ``trainer.cfg``, ``trainer.out_dir``, ``trainer.device``.
    Every rank runs every hook; write files on ``ann.dist.is_main()`` only.
    """

    def before_train(self, trainer: TrainerView) -> None:
        """Before the first step of this process (after a resume's restore)."""

    def after_step(self, trainer: TrainerView, step: Step) -> None:
        """After each optimizer step; ``step.iteration`` counts from 1."""

    def after_validation(self, trainer: TrainerView, metrics: dict[str, Any]) -> None:
        """After each validation: ``metrics`` as metrics.json holds them."""

    def after_train(self, trainer: TrainerView) -> None:
        """On every exit from the loop, an error's too (close what you opened)."""


class ProgressHook(Hook):
    """A tqdm bar where stderr is a terminal (none in a log file: no carriage
    returns there) and an ``iter N/M loss ...`` line every ``log_interval``."""

    def __init__(self, log_interval: int) -> None:
        self.log_interval = log_interval
        self.bar: tqdm | None = None

    def before_train(self, trainer: TrainerView) -> None:
        self.bar = tqdm(
            total=int(trainer.cfg.trainer.max_iters),
            initial=trainer.state.iteration,
            desc="train",
            # None: tqdm shows the bar only on a terminal.
            disable=None if dist.is_main() else True,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def after_step(self, trainer: TrainerView, step: Step) -> None:
        assert self.bar is not None
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{step.loss:.4f}", lr=f"{step.lr:.2e}", data=f"{step.data_time:.3f}s"
        )
        if step.iteration % self.log_interval == 0:
            log.info(
                "iter %d/%d loss %.4f lr %.3e time %.3fs data %.3fs",
                step.iteration,
                step.max_iters,
                step.loss,
                step.lr,
                step.step_time,
                step.data_time,
            )

    def after_train(self, trainer: TrainerView) -> None:
        if self.bar is not None:
            self.bar.close()


def peak_memory_mib(device: torch.device) -> float:
    """The peak memory of this process so far: CUDA's allocator on a GPU, else
    the peak resident set size (Linux reports KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TensorBoardHook(Hook):
    """The event files under ``<run>/tb`` (main process): loss terms, lr, step
    and data time and peak memory every ``log_interval``; each validation's
    headline metrics, per-class IoU and a grid of ``num_vis`` predictions."""

    def __init__(self, log_interval: int, num_vis: int = 4) -> None:
        self.log_interval = log_interval
        self.num_vis = num_vis
        self.writer: SummaryWriter | None = None

    def before_train(self, trainer: TrainerView) -> None:
        if dist.is_main():
            self.writer = SummaryWriter(trainer.out_dir / "tb")

    def after_step(self, trainer: TrainerView, step: Step) -> None:
        if self.writer is None or step.iteration % self.log_interval:
            return
        for key, value in step.losses.items():
            self.writer.add_scalar(names.TRAIN + key, float(value), step.iteration)
        self.writer.add_scalar(names.TRAIN_LR, step.lr, step.iteration)
        self.writer.add_scalar(names.TIME_ITER, step.step_time, step.iteration)
        self.writer.add_scalar(names.TIME_DATA, step.data_time, step.iteration)
        self.writer.add_scalar(names.MEMORY, peak_memory_mib(trainer.device), step.iteration)

    def after_validation(self, trainer: TrainerView, metrics: dict[str, Any]) -> None:
        if self.writer is None:
            return
        iteration = metrics["iteration"]
        for key in names.HEADLINE:
            self.writer.add_scalar(names.val_tag(key), metrics[key], iteration)
        for name, row in metrics["per_class"].items():
            if row["IoU"] is not None:
                self.writer.add_scalar(names.VAL_CLASS_IOU + name, row["IoU"], iteration)
        model = unwrap(trainer.state.model)
        grid = prediction_grid(model, trainer.val_set, trainer.device, self.num_vis)
        self.writer.add_image(names.VAL_PREDICTIONS, grid, iteration, dataformats="HWC")

    def after_train(self, trainer: TrainerView) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class EvaluationHook(Hook):
    """Validates every ``val_interval`` iterations and after the last one,
    keeps the best mIoU (``step.is_best`` for the checkpoint hook), logs the
    table and writes ``metrics.json`` (the last validation) and a line of
    ``metrics.jsonl`` per validation into the run folder."""

    def __init__(self, val_interval: int) -> None:
        self.val_interval = val_interval

    def after_step(self, trainer: TrainerView, step: Step) -> None:
        if step.iteration % self.val_interval and not step.last:
            return
        state = trainer.state
        step.metrics = state.metrics = trainer.validate(step.iteration)
        step.is_best = step.metrics["mIoU"] > state.best_miou
        state.best_miou = max(state.best_miou, step.metrics["mIoU"])

    def after_validation(self, trainer: TrainerView, metrics: dict[str, Any]) -> None:
        if not dist.is_main():
            return
        log.info("validation at iteration %d:\n%s", metrics["iteration"], format_table(metrics))
        write_metrics(metrics, trainer.out_dir / names.METRICS_FILE)
        with open(trainer.out_dir / names.METRICS_LOG, "a") as f:
            f.write(json.dumps(metrics) + "\n")


class CheckpointHook(Hook):
    """Saves every ``ckpt_interval`` iterations, after the last one and at a
    new best mIoU."""

    def __init__(self, ckpt_interval: int) -> None:
        self.ckpt_interval = ckpt_interval

    def after_step(self, trainer: TrainerView, step: Step) -> None:
        if step.iteration % self.ckpt_interval == 0 or step.last or step.is_best:
            trainer.save(step.iteration, best=step.is_best)


class SignalHook(Hook):
    """SIGTERM, SIGINT and SLURM's SIGUSR2 set ``step.stop`` (agreed by all
    ranks): the step is saved (unless the checkpoint hook just did) and the
    run stops; SIGUSR2 is then handed on to the handler installed before
    (submitit's requeue). It runs after the validation and checkpoint hooks,
    so that a signal that arrives while they work stops the run at this step."""

    def __init__(self) -> None:
        self.guard: SignalGuard | None = None

    def before_train(self, trainer: TrainerView) -> None:
        self.guard = SignalGuard().__enter__()

    def after_step(self, trainer: TrainerView, step: Step) -> None:
        assert self.guard is not None
        # Every rank stops at the same step, as rank 0 decides.
        step.stop = bool(dist.broadcast_object(self.guard.received is not None))
        if not step.stop:
            return
        if trainer.state.saved_iter != step.iteration:
            trainer.save(step.iteration)
        log.warning(
            "signal received: saved %s at iteration %d; re-run the same command to resume",
            trainer.ckpt_dir / "last.pth",
            step.iteration,
        )

    def after_train(self, trainer: TrainerView) -> None:
        if self.guard is not None:
            guard, self.guard = self.guard, None
            guard.__exit__(None, None, None)


def build_hooks(tcfg: DictConfig) -> list[Hook]:
    """The built-in hooks for ``trainer`` config ``tcfg``, then the user's
    from ``trainer.hooks`` (a list of ``{_target_: ..., args}``), in order."""
    log_interval = int(tcfg.log_interval)
    hooks: list[Hook] = [
        ProgressHook(log_interval),
        TensorBoardHook(log_interval, int(tcfg.get("num_vis", 4))),
        EvaluationHook(int(tcfg.val_interval)),
        CheckpointHook(int(tcfg.ckpt_interval)),
        SignalHook(),
    ]
    specs = tcfg.get("hooks") or []
    if not isinstance(specs, ListConfig | list):
        raise ConfigError(f"trainer.hooks must be a list of {{_target_: ...}}, got {specs!r}")
    for i, spec in enumerate(specs):
        hook = instantiate(spec)
        if not isinstance(hook, Hook):
            target = OmegaConf.select(spec, "_target_") if isinstance(spec, DictConfig) else spec
            raise ConfigError(
                f"trainer.hooks[{i}]: {target} is not a subclass of ann.engine.hooks.Hook"
            )
        hooks.append(hook)
    return hooks


__all__ = [
    "CheckpointHook",
    "EvaluationHook",
    "Hook",
    "ProgressHook",
    "SignalHook",
    "TensorBoardHook",
    "TrainerView",
    "build_hooks",
    "peak_memory_mib",
]
