"""What a training run steps: the model with its speed options, the optimizer,
the schedule and the GradScaler (:func:`build_training`), its data
(:func:`train_loader`) and one step (:func:`train_step`). :class:`~ann.engine.trainer.Trainer` and the ``train``
benchmark both use them, so the benchmark times the trainer's own step."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset

from ann import dist
from ann.data.loader import build_loader
from ann.data.samplers import TrainSampler
from ann.engine.optim import build_optimizer
from ann.speed import (
    amp_dtype,
    autocast,
    channels_last_choice,
    configure_backends,
    prepare_model,
    to_input,
    unwrap,
)


@dataclass
class Training:
    """The parts :func:`train_step` needs; ``model`` is not yet compiled (the
    trainer wraps it in DDP first) and may be replaced by a wrapper of itself."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    channels_last: bool
    accumulate: int
    clip_grad: float | None
    device: torch.device

    def step(
        self, data_iter: Iterator[dict], model: nn.Module | None = None
    ) -> tuple[dict[str, torch.Tensor], float]:
        """:func:`train_step` with these parts; ``model``: the same model
        wrapped (DDP, torch.compile), else ``self.model``."""
        return train_step(
            model or self.model,
            data_iter,
            self.optimizer,
            self.scheduler,
            self.scaler,
            device=self.device,
            dtype=self.amp_dtype,
            channels_last=self.channels_last,
            accumulate=self.accumulate,
            clip_grad=self.clip_grad,
        )


def build_training(cfg: DictConfig, model: nn.Module, device: torch.device) -> Training:
    """The training parts for ``model`` (already on ``device``) from ``cfg``.

    Sets the CUDA backend flags and the model's layout (``trainer.channels_last``:
    true, false, or auto: by CPU class),
    builds ``cfg.optimizer`` over parameter groups (its ``paramwise`` options go
    to :func:`~ann.engine.optim.build_optimizer`), ``cfg.scheduler`` over
    ``trainer.max_iters``, the autocast dtype (``trainer.amp`` true / false /
    ``"auto"``, ``trainer.amp_dtype``) and a GradScaler, enabled for fp16 only.
    ``trainer.compile`` is left to the caller (see :class:`Training`).
    """
    tcfg = cfg.trainer
    configure_backends(device, tcfg.cudnn_benchmark, tcfg.tf32)
    channels_last = channels_last_choice(tcfg.channels_last, "trainer", device)
    model = prepare_model(model, channels_last=channels_last)
    paramwise = OmegaConf.to_container(cfg.optimizer.get("paramwise", {}) or {})
    opt_cfg = OmegaConf.masked_copy(cfg.optimizer, [k for k in cfg.optimizer if k != "paramwise"])
    optimizer = build_optimizer(instantiate(opt_cfg, _partial_=True), model, **paramwise)
    scheduler = instantiate(cfg.scheduler, optimizer=optimizer, max_iters=tcfg.max_iters)
    dtype = amp_dtype(tcfg.amp, str(tcfg.amp_dtype), "trainer", device)
    # fp16 gradients underflow without loss scaling; bf16 has fp32's range.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    clip = tcfg.get("clip_grad")
    return Training(
        model,
        optimizer,
        scheduler,
        scaler,
        dtype,
        channels_last,
        accumulate=int(tcfg.get("accumulate", 1)),
        clip_grad=float(clip) if clip else None,
        device=device,
    )


def train_loader(
    dataset: Dataset, tcfg: DictConfig, device: torch.device, start_iter: int = 0
) -> DataLoader:
    """The training loader over ``dataset``: this rank's share of the seeded
    shuffled stream (``TrainSampler``) from iteration ``start_iter``, batches
    of ``trainer.batch_size`` from ``trainer.num_workers`` workers."""
    sampler = TrainSampler(
        len(dataset),
        tcfg.batch_size,
        seed=int(tcfg.seed),
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        # With accumulation an iteration consumes several batches.
        start_iter=start_iter * int(tcfg.get("accumulate", 1)),
    )
    return build_loader(
        dataset,
        batch_size=tcfg.batch_size,
        sampler=sampler,
        num_workers=int(tcfg.num_workers),
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=True,
        # An own generator keeps the loader from drawing on the global RNG,
        # which would make a resumed run's dropout differ.
        generator=torch.Generator().manual_seed(int(tcfg.seed)),
    )


def train_step(
    model: nn.Module,
    data_iter: Iterator[dict],
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler,
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    channels_last: bool = False,
    accumulate: int = 1,
    clip_grad: float | None = None,
) -> tuple[dict[str, torch.Tensor], float]:
    """One optimizer step over ``accumulate`` batches of ``data_iter``, each
    {"image": (B, 3, H, W) float, "mask": (B, H, W) int64}: forward under
    autocast to ``dtype``, the model's ``compute_loss``, scaled backward,
    optional gradient clipping, optimizer and schedule step.

    Returns the loss terms (scalars averaged over batches and ranks, detached,
    on the CPU) and the seconds spent waiting for data.
    """
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, torch.Tensor] = {}
    data_time = 0.0
    for micro in range(accumulate):
        t0 = time.perf_counter()
        batch = next(data_iter)
        data_time += time.perf_counter() - t0
        images = to_input(batch["image"].to(device, non_blocking=True), channels_last)
        masks = batch["mask"].to(device, non_blocking=True)
        last = micro == accumulate - 1
        # Gradients are all-reduced once, on the last micro-batch.
        sync = nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(device, dtype):
                outputs = model(images)
            losses = unwrap(model).compute_loss(outputs, masks)
            scaler.scale(losses["loss"] / accumulate).backward()
        for k, v in losses.items():
            totals[k] = totals.get(k, 0.0) + v.detach() / accumulate
    if clip_grad:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    names = sorted(totals)
    stacked = dist.all_reduce_sum(torch.stack([totals[k].float() for k in names]))
    stacked /= dist.get_world_size()
    return dict(zip(names, stacked.cpu(), strict=True)), data_time


__all__ = ["Training", "build_training", "train_loader", "train_step"]
