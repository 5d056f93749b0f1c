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
from ann.data.loader import build_loader, worker_deaths
from ann.data.samplers import TrainSampler
from ann.engine.checkpoint import (
    load_checkpoint,
    load_model_weights,
    remove_stale_temps,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ann.engine.optim import build_optimizer
from ann.engine.signals import SignalGuard
from ann.errors import DataLoaderDied, TrainingDiverged
from ann.evaluation.evaluator import write_metrics
from ann.evaluation.metrics import format_table
from ann.logging_utils import setup_logging
from ann.models.pretrained import ensure_available, without_pretrained
from ann.speed import (
    amp_dtype,
    autocast,
    configure_backends,
    prepare_model,
    to_input,
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
        configure_backends(self.device, self.tcfg.cudnn_benchmark, self.tcfg.tf32)
        self.channels_last = bool(self.tcfg.channels_last)
        self.model = prepare_model(model, channels_last=self.channels_last)
        paramwise = OmegaConf.to_container(cfg.optimizer.get("paramwise", {}) or {})
        opt_cfg = OmegaConf.masked_copy(
            cfg.optimizer, [k for k in cfg.optimizer if k != "paramwise"]
        )
        self.optimizer = build_optimizer(instantiate(opt_cfg, _partial_=True), model, **paramwise)
        self.scheduler = instantiate(
            cfg.scheduler, optimizer=self.optimizer, max_iters=self.tcfg.max_iters
        )
        self.amp_dtype = amp_dtype(self.tcfg.amp, str(self.tcfg.amp_dtype), "trainer", self.device)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range.
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.evaluator = instantiate(cfg.evaluator)
        self.accumulate = int(self.tcfg.get("accumulate", 1))
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
        if self.tcfg.resume and (self.ckpt_dir / "last.pth").is_file():
            return "resume"
        return "load_from" if self.tcfg.get("load_from") else None

    def _restore(self) -> None:
        if dist.is_main():
            for path in remove_stale_temps(self.ckpt_dir):
                log.warning("removed %s, left by a save that was interrupted", path)
        last = self.ckpt_dir / "last.pth"
        if self._restore_source() == "resume":
            state = load_checkpoint(last, self.device, key="trainer.resume")
            load_model_weights(self.model, state, last)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.start_iter = int(state["iteration"])
            self.saved_iter = self.start_iter
            self.best_miou = float(state["best_mIoU"])
            rngs = state["rng"]
            set_rng_state(rngs[dist.get_rank()] if isinstance(rngs, list) else rngs)
            log.info("resumed from %s at iteration %d", last, self.start_iter)
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

    def save(self, iteration: int, best: bool = False, periodic: bool = False) -> None:
        state = self._state(iteration)  # collective under DDP: every rank calls it
        if not dist.is_main():
            self.saved_iter = iteration
            return
        # last.pth is written last: a run killed before it resumes from the
        # previous last.pth, redoes this iteration and rewrites the others.
        if best:
            save_checkpoint(state, self.ckpt_dir / "best.pth")
        keep = int(self.tcfg.get("keep_last", 0))
        if periodic and keep > 0:
            save_checkpoint(state, self.ckpt_dir / f"iter_{iteration:07d}.pth")
            for old in sorted(self.ckpt_dir.glob("iter_*.pth"))[:-keep]:
                old.unlink()
        save_checkpoint(state, self.ckpt_dir / "last.pth")
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
        sampler = TrainSampler(
            len(self.train_set),
            self.tcfg.batch_size,
            seed=int(self.tcfg.seed),
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            # With accumulation an iteration consumes several batches.
            start_iter=self.start_iter * self.accumulate,
        )
        return build_loader(
            self.train_set,
            batch_size=self.tcfg.batch_size,
            sampler=sampler,
            num_workers=int(self.tcfg.num_workers),
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            persistent_workers=True,
            # An own generator keeps the loader from drawing on the global RNG,
            # which would make a resumed run's dropout differ.
            generator=torch.Generator().manual_seed(int(self.tcfg.seed)),
        )

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
        """One optimizer step over ``trainer.accumulate`` batches.

        Returns the loss terms (averaged over batches and ranks, detached)
        and the time spent waiting for data.
        """
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        data_time = 0.0
        for micro in range(self.accumulate):
            t0 = time.perf_counter()
            batch = next(data_iter)
            data_time += time.perf_counter() - t0
            images = to_input(batch["image"].to(self.device, non_blocking=True), self.channels_last)
            masks = batch["mask"].to(self.device, non_blocking=True)
            last = micro == self.accumulate - 1
            # Gradients are all-reduced once, on the last micro-batch.
            sync = (
                nullcontext()
                if last or not hasattr(self.model, "no_sync")
                else self.model.no_sync()
            )
            with sync:
                with autocast(self.device, self.amp_dtype):
                    outputs = self.model(images)
                losses = unwrap(self.model).compute_loss(outputs, masks)
                self.scaler.scale(losses["loss"] / self.accumulate).backward()
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + v.detach() / self.accumulate
        if self.tcfg.get("clip_grad"):
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), float(self.tcfg.clip_grad))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        names = sorted(totals)
        stacked = dist.all_reduce_sum(torch.stack([totals[k].float() for k in names]))
        stacked /= dist.get_world_size()
        return dict(zip(names, stacked.cpu(), strict=True)), data_time

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
                    iteration, max_iters, loss, lr, step_time, data_time,
                )  # fmt: skip
            done = iteration == max_iters
            is_best = False
            if iteration % int(self.tcfg.val_interval) == 0 or done:
                metrics = self.validate(iteration)
                is_best = metrics["mIoU"] > self.best_miou
                self.best_miou = max(self.best_miou, metrics["mIoU"])
            stop = dist.broadcast_object(guard.received is not None)
            if iteration % int(self.tcfg.ckpt_interval) == 0 or done or is_best or stop:
                self.save(
                    iteration,
                    best=is_best,
                    periodic=iteration % int(self.tcfg.ckpt_interval) == 0,
                )
            if stop:
                log.warning(
                    "signal received: saved %s at iteration %d; re-run the same command to resume",
                    self.ckpt_dir / "last.pth",
                    iteration,
                )
                break
        return metrics


__all__ = ["Trainer"]
