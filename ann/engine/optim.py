"""Optimizer parameter groups and the poly learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler


def param_groups(
    model: nn.Module,
    weight_decay: float,
    norm_decay: bool = True,
    bias_decay: bool = True,
    head_lr_mult: float = 1.0,
) -> list[dict]:
    """Splits trainable parameters into groups for the optimizer.

    Norm weights/biases and conv biases can be excluded from weight decay;
    parameters outside ``model.backbone`` (the heads) get ``lr_mult``
    ``head_lr_mult``. Each group carries "lr_mult", used by :class:`PolyLR`.
    """
    norm_params = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm)
        for p in m.parameters(recurse=False)
    }
    backbone = getattr(model, "backbone", None)
    backbone_params = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = weight_decay
        if (id(p) in norm_params and not norm_decay) or (
            name.endswith(".bias") and id(p) not in norm_params and not bias_decay
        ):
            decay = 0.0
        mult = 1.0 if id(p) in backbone_params else head_lr_mult
        groups.setdefault((decay, mult), []).append(p)
    return [
        {"params": ps, "weight_decay": decay, "lr_mult": mult}
        for (decay, mult), ps in groups.items()
    ]


def build_optimizer(
    factory: Callable[..., torch.optim.Optimizer], model: nn.Module, **paramwise: object
) -> torch.optim.Optimizer:
    """Calls ``factory(params=groups)`` (a Hydra partial of e.g. torch.optim.SGD)
    and scales each group's lr by its "lr_mult"."""
    weight_decay = (
        factory.keywords.get("weight_decay", 0.0) if hasattr(factory, "keywords") else 0.0
    )
    optimizer = factory(params=param_groups(model, weight_decay, **paramwise))
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * group["lr_mult"]
        group["initial_lr"] = group["lr"]
    return optimizer


class PolyLR(LRScheduler):
    """lr = (base - min_lr) · (1 - t / max_iters)^power + min_lr, stepped per
    iteration, after an optional linear warmup from ``warmup_ratio · lr``.

    ``min_lr`` is scaled by each group's "lr_mult".
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iters: int,
        power: float = 0.9,
        min_lr: float = 0.0,
        warmup_iters: int = 0,
        warmup_ratio: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self.max_iters = max_iters
        self.power = power
        self.min_lr = min_lr
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t = min(self.last_epoch, self.max_iters)
        coeff = (1 - t / self.max_iters) ** self.power
        lrs = []
        for base, group in zip(self.base_lrs, self.optimizer.param_groups, strict=True):
            min_lr = self.min_lr * group.get("lr_mult", 1.0)
            lr = (base - min_lr) * coeff + min_lr
            if t < self.warmup_iters:
                k = self.warmup_ratio + (1 - self.warmup_ratio) * t / self.warmup_iters
                lr = lr * k
            lrs.append(lr)
        return lrs
