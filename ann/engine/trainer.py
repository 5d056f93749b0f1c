"""The iteration-based training loop: :class:`Trainer` (``tools/train.py`` runs it
through :func:`ann.commands.train.train`); what happens around each step is
in :mod:`ann.engine.hooks`, the state it advances in :mod:`ann.engine.state`."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ann import dist
from ann.config.schema import check_config
from ann.data.loader import worker_deaths
from ann.engine.build import build_training, train_loader
from ann.engine.checkpoint import (
    has_checkpoint,
    link_checkpoint,
    load_checkpoint,
    load_model_weights,
    load_newest,
    prune_checkpoints,
    remove_stale_temps,
    write_checkpoint,
)
from ann.engine.hooks import Hook, build_hooks
from ann.engine.run_dir import check_resume, start_run
from ann.engine.state import Step, TrainState
from ann.errors import CheckpointSaveError, DataLoaderDied, TrainingDiverged
from ann.logging_utils import attach_log_file, setup_logging
from ann.models.pretrained import ensure_available, without_pretrained
from ann.speed import prepare_model, unwrap

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def log_initialisation(model_cfg: DictConfig) -> None:
    """Says when the backbone starts from random weights: the published recipes
    start from ImageNet weights, and from scratch they end far lower."""
    backbone = model_cfg.get("backbone")
    if backbone is not None and "pretrained" in backbone and not backbone.pretrained:
        log.warning(
            "model.backbone.pretrained=null: the backbone trains from scratch (random "
            "weights); the published recipes start from ImageNet weights "
            "(model.backbone.pretrained=v1c)"
        )


def agree_output_dir(cfg: DictConfig) -> Path:
    """One output directory for all ranks (rank 0's, so ``${now:}`` in a run
    dir cannot split a DDP run); nothing is written into it yet
    (:func:`~ann.engine.run_dir.start_run` does, once the start succeeded)."""
    own = Path(cfg.output_dir)
    out_dir = Path(dist.broadcast_object(str(own)))
    if own.resolve() != out_dir.resolve() and own.is_dir() and not any(own.iterdir()):
        own.rmdir()  # the empty directory Hydra made for this rank's own ${now:}
    cfg.output_dir = str(out_dir)
    return out_dir


class Trainer:
    """Builds everything from the config and runs the iteration loop: a step
    (:meth:`train_step`) and then the hooks (:mod:`ann.engine.hooks`), which
    log, validate, save and watch for signals. ``self.state`` is the one
    object the loop advances (:class:`~ann.engine.state.TrainState`)."""

    def __init__(self, cfg: DictConfig) -> None:
        check_config(cfg)  # before anything is built or read
        self.cfg = cfg
        self.tcfg = cfg.trainer
        # Before the run folder exists: a wrong hook changes nothing. (The
        # seeding below overwrites any random numbers a hook's constructor drew.)
        self.hooks = build_hooks(self.tcfg)
        self.device = dist.init_distributed(float(self.tcfg.dist_timeout_min))
        self.out_dir = agree_output_dir(cfg)
        self.ckpt_dir = self.out_dir / "checkpoints"
        # The log file opens once the start has succeeded (start_run); until
        # then lines are held back, so a failed start writes nothing.
        setup_logging(None, dist.is_main(), hold=True)
        resuming = self._restore_source() == "resume"
        changes = check_resume(cfg, self.out_dir) if resuming else []
        seed_everything(int(self.tcfg.seed) + dist.get_rank())
        if self.tcfg.get("deterministic", False):
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.train_set = instantiate(cfg.dataset.train)
        self.val_set = instantiate(cfg.dataset.val)
        self.state = TrainState.from_training(build_training(cfg, self._model(), self.device))
        self.evaluator = instantiate(cfg.evaluator)
        self._restore()
        state = self.state
        if dist.get_world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            state.model = DistributedDataParallel(state.model, device_ids=ids)
        # Compiled last, around DDP (its graph breaks at the bucket boundaries);
        # validation and checkpoints use the plain module inside (unwrap).
        state.model = prepare_model(
            state.model, compile=bool(self.tcfg.compile), compile_mode=str(self.tcfg.compile_mode)
        )
        start_run(cfg, self.out_dir, changes, state.start_iter if resuming else None)
        attach_log_file(self.out_dir / "train.log", dist.is_main())

    def _model(self) -> nn.Module:
        """The model on the device, SyncBatchNorm under multi-GPU DDP. A run
        that restores a checkpoint never needs (nor downloads) ImageNet
        weights; one that does fetches them before anything heavy starts."""
        cfg = self.cfg
        restoring = self._restore_source() is not None
        if not restoring:
            ensure_available(cfg.model.get("backbone"))
        model = instantiate(without_pretrained(cfg.model) if restoring else cfg.model)
        model = model.to(self.device)
        if not restoring:
            log_initialisation(cfg.model)
        if dist.get_world_size() > 1 and self.device.type == "cuda" and self.tcfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    @property
    def model(self) -> nn.Module:
        """The model the loop steps (DDP / compiled where asked)."""
        return self.state.model

    # -- checkpoints ---------------------------------------------------------
    def _restore_source(self) -> str | None:
        """ "resume" or "load_from" when a checkpoint will fill the model, else None."""
        if self.tcfg.resume and has_checkpoint(self.ckpt_dir):
            return "resume"
        return "load_from" if self.tcfg.get("load_from") else None

    def _restore(self) -> None:
        if dist.is_main():
            for path in remove_stale_temps(self.ckpt_dir):
                log.warning("removed %s, left by a save that was interrupted", path)
        found = (
            load_newest(self.ckpt_dir, self.device) if self._restore_source() == "resume" else None
        )
        if found is not None:
            path, ckpt = found
            load_model_weights(self.state.model, ckpt, path)
            self.state.load_checkpoint(ckpt)
            log.info("resumed from %s at iteration %d", path, self.state.iteration)
            if path.name != "last.pth" and dist.is_main():
                # last.pth is older, torn or missing: it names this one again.
                link_checkpoint(path, self.ckpt_dir / "last.pth")
        elif self.tcfg.get("load_from"):
            ckpt = load_checkpoint(self.tcfg.load_from, self.device, key="trainer.load_from")
            load_model_weights(self.state.model, ckpt, self.tcfg.load_from)
            log.info("loaded weights from %s (fine-tuning from iteration 0)", self.tcfg.load_from)

    def save(self, iteration: int, best: bool = False) -> None:
        """Writes the state once, to ``iter_NNNNNNN.pth``, and hard-links
        ``best.pth`` (if ``best``) and ``last.pth`` to it; then prunes the
        iter files :func:`prune_checkpoints` does not keep. A failed save is
        a :class:`CheckpointSaveError` that says which checkpoint is intact."""
        # Collective under DDP: every rank calls it.
        ckpt = self.state.to_checkpoint(OmegaConf.to_container(self.cfg, resolve=True))
        if not dist.is_main():
            self.state.saved_iter = iteration
            return
        # last.pth moves last: a run killed before that resumes from the newer
        # iter file (or the previous last.pth) and rewrites the links.
        links = ["best.pth", "last.pth"] if best else ["last.pth"]
        try:
            write_checkpoint(ckpt, self.ckpt_dir, iteration, links)
        except CheckpointSaveError as exc:
            raise CheckpointSaveError(f"{exc}{self.intact_note()}") from None
        interval = int(self.tcfg.ckpt_interval)
        prune_checkpoints(
            self.ckpt_dir, int(self.tcfg.get("keep_last", 0)), lambda it: it % interval == 0
        )
        self.state.saved_iter = iteration

    def intact_note(self) -> str:
        """Where a re-run resumes from, for the message of a run that stops on an error."""
        saved = self.state.saved_iter
        if saved is None:
            return "; no checkpoint was written yet"
        return (
            f"; {self.ckpt_dir / 'last.pth'} (iteration {saved}) is intact: "
            "re-run the same command to resume"
        )

    # -- loop ----------------------------------------------------------------
    def validate(self, iteration: int) -> dict:
        """Evaluates the model on the validation set; the hooks' after_validation
        record the metrics (``iteration`` added). Returns them."""
        # Validation must not draw on the training RNG streams, or a run
        # resumed after a validation would diverge from an uninterrupted one.
        with torch.random.fork_rng(devices=[]):
            metrics = self.evaluator.evaluate(
                self.state.model, self.val_set, self.device, loader_name="val"
            )
        metrics["iteration"] = iteration
        for hook in self.hooks:
            hook.after_validation(self, metrics)
        return metrics

    def train_step(self, data_iter: Iterator[dict]) -> tuple[dict[str, torch.Tensor], float]:
        """One optimizer step over ``trainer.accumulate`` batches
        (:func:`ann.engine.build.train_step`).

        Returns the loss terms (averaged over batches and ranks, detached)
        and the time spent waiting for data.
        """
        return self.state.step(data_iter)

    def run(self) -> dict:
        """Trains from ``state.iteration`` to ``trainer.max_iters``; returns the
        last validation's metrics."""
        state, max_iters = self.state, int(self.tcfg.max_iters)
        if state.iteration >= max_iters:
            log.info("already trained to iteration %d; nothing to do", state.iteration)
            return {}
        log.info(
            "training %s for %d iterations (from %d) on %s x%d; output %s",
            type(unwrap(state.model).decode_head).__name__,
            max_iters,
            state.iteration,
            self.device,
            dist.get_world_size(),
            self.out_dir,
        )
        state.model.train()
        loader = train_loader(self.train_set, self.tcfg, self.device, state.iteration)
        data_iter = iter(loader)
        with self._hooks_running():
            try:
                with worker_deaths("train", "trainer.num_workers"):
                    while state.iteration < max_iters and not self.run_step(data_iter).stop:
                        pass
            except DataLoaderDied as exc:
                raise DataLoaderDied(f"{exc}{self.intact_note()}") from None
        return state.metrics

    def run_step(self, data_iter: Iterator[dict]) -> Step:
        """One iteration: the optimizer step, then every hook's after_step."""
        state = self.state
        dist.report_progress(state.iteration + 1)
        t0 = time.perf_counter()
        losses, data_time = self.train_step(data_iter)
        state.iteration += 1
        lr = state.optimizer.param_groups[0]["lr"]
        step = Step(state.iteration, int(self.tcfg.max_iters), losses, lr, 0.0, data_time)
        if not math.isfinite(step.loss):
            raise TrainingDiverged(
                f"non-finite loss {step.loss} at iteration {step.iteration}; stopped. The last "
                f"good checkpoint is {self.ckpt_dir / 'last.pth'} (lower optimizer.lr or set "
                "trainer.clip_grad)"
            )
        step.step_time = time.perf_counter() - t0
        for hook in self.hooks:
            hook.after_step(self, step)
        return step

    @contextmanager
    def _hooks_running(self) -> Iterator[None]:
        """Every hook's before_train; on any exit the after_train of those
        started, in list order, each even if an earlier one raised."""
        started: list[Hook] = []
        try:
            for hook in self.hooks:
                hook.before_train(self)
                started.append(hook)
            yield
        finally:
            with ExitStack() as stack:
                for hook in reversed(started):  # ExitStack unwinds last-in first
                    stack.callback(hook.after_train, self)


__all__ = ["Trainer"]
