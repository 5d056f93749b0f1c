"""The iteration-based training loop: :class:`Trainer` (``tools/train.py`` runs it
through :func:`ann.commands.train.train`)."""

from __future__ import annotations

import logging
import math
import random
import resource
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

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
    rng_state,
    set_rng_state,
    write_checkpoint,
)
from ann.engine.signals import SignalGuard
from ann.errors import CheckpointSaveError, DataLoaderDied, TrainingDiverged
from ann.evaluation.evaluator import write_metrics
from ann.evaluation.metrics import format_table
from ann.logging_utils import setup_logging
from ann.models.pretrained import ensure_available, without_pretrained
from ann.speed import (
    prepare_model,
    unwrap,
)
from ann.visualization.masks import prediction_grid

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


def prepare_output_dir(cfg: DictConfig) -> Path:
    """One output directory for all ranks (rank 0's, so ``${now:}`` in a run
    dir cannot split a DDP run), with the resolved config.yaml in it."""
    own = Path(cfg.output_dir)
    out_dir = Path(dist.broadcast_object(str(own)))
    if own.resolve() != out_dir.resolve() and own.is_dir() and not any(own.iterdir()):
        own.rmdir()  # the empty directory Hydra made for this rank's own ${now:}
    cfg.output_dir = str(out_dir)
    if dist.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return out_dir


class Trainer:
    """Builds everything from the config and runs the iteration loop."""

    def __init__(self, cfg: DictConfig) -> None:
        check_config(cfg)  # before anything is built or read
        self.cfg = cfg
        self.tcfg = cfg.trainer
        self.device = dist.init_distributed(float(self.tcfg.dist_timeout_min))
        self.out_dir = prepare_output_dir(cfg)
        self.ckpt_dir = self.out_dir / "checkpoints"
        setup_logging(self.out_dir / "train.log", dist.is_main())
        seed_everything(int(self.tcfg.seed) + dist.get_rank())
        if self.tcfg.get("deterministic", False):
            torch.use_deterministic_algorithms(True, warn_only=True)

        self.train_set = instantiate(cfg.dataset.train)
        self.val_set = instantiate(cfg.dataset.val)
        # A run that restores a checkpoint never needs (nor downloads) ImageNet
        # weights; one that does fetches them before anything heavy starts.
        restoring = self._restore_source() is not None
        if not restoring:
            ensure_available(cfg.model.get("backbone"))
        model_cfg = without_pretrained(cfg.model) if restoring else cfg.model
        model = instantiate(model_cfg).to(self.device)
        if not restoring:
            log_initialisation(cfg.model)
        if dist.get_world_size() > 1 and self.device.type == "cuda" and self.tcfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.parts = parts = build_training(cfg, model, self.device)
        self.model, self.channels_last = parts.model, parts.channels_last
        self.optimizer, self.scheduler = parts.optimizer, parts.scheduler
        self.amp_dtype, self.scaler = parts.amp_dtype, parts.scaler
        self.evaluator = instantiate(cfg.evaluator)
        self.accumulate = parts.accumulate
        self.start_iter = 0
        self.best_miou = -1.0
        self.saved_iter: int | None = None
        self._restore()
        if dist.get_world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.model, device_ids=ids)
        # Compiled last, around DDP (its graph breaks at the bucket boundaries);
        # validation and checkpoints use the plain module inside (unwrap).
        self.model = prepare_model(
            self.model, compile=bool(self.tcfg.compile), compile_mode=str(self.tcfg.compile_mode)
        )
        self.writer = SummaryWriter(self.out_dir / "tb") if dist.is_main() else None

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
            path, state = found
            load_model_weights(self.model, state, path)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.start_iter = int(state["iteration"])
            self.saved_iter = self.start_iter
            self.best_miou = float(state["best_mIoU"])
            rngs = state["rng"]
            set_rng_state(rngs[dist.get_rank()] if isinstance(rngs, list) else rngs)
            log.info("resumed from %s at iteration %d", path, self.start_iter)
            if path.name != "last.pth" and dist.is_main():
                # last.pth is older, torn or missing: it names this one again.
                link_checkpoint(path, self.ckpt_dir / "last.pth")
        elif self.tcfg.get("load_from"):
            state = load_checkpoint(self.tcfg.load_from, self.device, key="trainer.load_from")
            load_model_weights(self.model, state, self.tcfg.load_from)
            log.info("loaded weights from %s (fine-tuning from iteration 0)", self.tcfg.load_from)

    def _state(self, iteration: int) -> dict:
        rngs = rng_state()
        if dist.get_world_size() > 1:
            rngs = [None] * dist.get_world_size()
            torch.distributed.all_gather_object(rngs, rng_state())
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": iteration,
            "best_mIoU": self.best_miou,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "rng": rngs,
        }

    def save(self, iteration: int, best: bool = False) -> None:
        """Writes the state once, to ``iter_NNNNNNN.pth``, and hard-links
        ``best.pth`` (if ``best``) and ``last.pth`` to it; then prunes the
        iter files :func:`prune_checkpoints` does not keep. A failed save is
        a :class:`CheckpointSaveError` that says which checkpoint is intact."""
        state = self._state(iteration)  # collective under DDP: every rank calls it
        if not dist.is_main():
            self.saved_iter = iteration
            return
        # last.pth moves last: a run killed before that resumes from the newer
        # iter file (or the previous last.pth) and rewrites the links.
        links = ["best.pth", "last.pth"] if best else ["last.pth"]
        try:
            write_checkpoint(state, self.ckpt_dir, iteration, links)
        except CheckpointSaveError as exc:
            raise CheckpointSaveError(f"{exc}{self.intact_note()}") from None
        interval = int(self.tcfg.ckpt_interval)
        prune_checkpoints(
            self.ckpt_dir, int(self.tcfg.get("keep_last", 0)), lambda it: it % interval == 0
        )
        self.saved_iter = iteration

    def intact_note(self) -> str:
        """Where a re-run resumes from, for the message of a run that stops on an error."""
        if self.saved_iter is None:
            return "; no checkpoint was written yet"
        return (
            f"; {self.ckpt_dir / 'last.pth'} (iteration {self.saved_iter}) is intact: "
            "re-run the same command to resume"
        )

    # -- data ----------------------------------------------------------------
    def _loader(self) -> DataLoader:
        return train_loader(self.train_set, self.tcfg, self.device, self.start_iter)

    # -- loop ----------------------------------------------------------------
    def validate(self, iteration: int) -> dict:
        # Validation must not draw on the training RNG streams, or a run
        # resumed after a validation would diverge from an uninterrupted one.
        with torch.random.fork_rng(devices=[]):
            metrics = self.evaluator.evaluate(
                self.model, self.val_set, self.device, loader_name="val"
            )
        metrics["iteration"] = iteration
        if dist.is_main():
            log.info("validation at iteration %d:\n%s", iteration, format_table(metrics))
            write_metrics(metrics, self.out_dir / "metrics.json")
            for key in ("mIoU", "mAcc", "aAcc"):
                self.writer.add_scalar(f"val/{key}", metrics[key], iteration)
            for name, row in metrics["per_class"].items():
                if row["IoU"] is not None:
                    self.writer.add_scalar(f"val_IoU/{name}", row["IoU"], iteration)
            grid = prediction_grid(
                unwrap(self.model), self.val_set, self.device, int(self.tcfg.get("num_vis", 4))
            )
            self.writer.add_image("val/predictions", grid, iteration, dataformats="HWC")
        return metrics

    def train_step(self, data_iter: Iterator[dict]) -> tuple[dict[str, torch.Tensor], float]:
        """One optimizer step over ``trainer.accumulate`` batches
        (:func:`ann.engine.build.train_step`).

        Returns the loss terms (averaged over batches and ranks, detached)
        and the time spent waiting for data.
        """
        return self.parts.step(data_iter, self.model)

    def run(self) -> dict:
        max_iters = int(self.tcfg.max_iters)
        metrics: dict = {}
        if self.start_iter >= max_iters:
            log.info("already trained to iteration %d; nothing to do", self.start_iter)
            return metrics
        log.info(
            "training %s for %d iterations (from %d) on %s x%d; output %s",
            type(unwrap(self.model).decode_head).__name__,
            max_iters,
            self.start_iter,
            self.device,
            dist.get_world_size(),
            self.out_dir,
        )
        self.model.train()
        data_iter = iter(self._loader())
        bar = tqdm(
            total=max_iters,
            initial=self.start_iter,
            desc="train",
            disable=not dist.is_main(),
            dynamic_ncols=True,
        )
        # The bar and the writer close on any exit, so an error message comes last.
        with bar, SignalGuard() as guard, self.writer or nullcontext():
            try:
                with worker_deaths("train", "trainer.num_workers"):
                    metrics = self._loop(data_iter, bar, guard)
            except DataLoaderDied as exc:
                raise DataLoaderDied(f"{exc}{self.intact_note()}") from None
        return metrics

    def _loop(self, data_iter: Iterator[dict], bar: tqdm, guard: SignalGuard) -> dict:
        """Iterations from ``start_iter`` to ``max_iters`` with validations and
        checkpoints; returns the last validation's metrics."""
        max_iters = int(self.tcfg.max_iters)
        metrics: dict = {}
        iteration = self.start_iter
        while iteration < max_iters:
            dist.report_progress(iteration + 1)
            t0 = time.perf_counter()
            losses, data_time = self.train_step(data_iter)
            iteration += 1
            loss = float(losses["loss"])
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"non-finite loss {loss} at iteration {iteration}; stopped. The last good "
                    f"checkpoint is {self.ckpt_dir / 'last.pth'} (lower optimizer.lr or set "
                    "trainer.clip_grad)"
                )
            step_time = time.perf_counter() - t0
            lr = self.optimizer.param_groups[0]["lr"]
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", data=f"{data_time:.3f}s")
            if self.writer is not None and iteration % int(self.tcfg.log_interval) == 0:
                for k, v in losses.items():
                    self.writer.add_scalar(f"train/{k}", float(v), iteration)
                self.writer.add_scalar("train/lr", lr, iteration)
                self.writer.add_scalar("time/iter", step_time, iteration)
                self.writer.add_scalar("time/data", data_time, iteration)
                if self.device.type == "cuda":
                    mem = torch.cuda.max_memory_allocated(self.device) / 2**20
                else:  # peak resident set size of this process (Linux: KiB)
                    mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                self.writer.add_scalar("memory/max_MiB", mem, iteration)
                log.info(
                    "iter %d/%d loss %.4f lr %.3e time %.3fs data %.3fs",
                    iteration,
                    max_iters,
                    loss,
                    lr,
                    step_time,
                    data_time,
                )
            done = iteration == max_iters
            is_best = False
            if iteration % int(self.tcfg.val_interval) == 0 or done:
                metrics = self.validate(iteration)
                is_best = metrics["mIoU"] > self.best_miou
                self.best_miou = max(self.best_miou, metrics["mIoU"])
            stop = dist.broadcast_object(guard.received is not None)
            if iteration % int(self.tcfg.ckpt_interval) == 0 or done or is_best or stop:
                self.save(iteration, best=is_best)
            if stop:
                log.warning(
                    "signal received: saved %s at iteration %d; re-run the same command to resume",
                    self.ckpt_dir / "last.pth",
                    iteration,
                )
                break
        return metrics


__all__ = ["Trainer"]
