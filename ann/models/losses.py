"""Segmentation losses: cross-entropy and OHEM cross-entropy with ignore_index."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.errors import ConfigError


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy, mean over non-ignored pixels.

    forward(logits (B, K, H, W), target (B, H, W) int64) -> scalar.
    """

    def __init__(
        self, ignore_index: int = 255, class_weight: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        weight = torch.tensor(list(class_weight), dtype=torch.float32) if class_weight else None
        self.register_buffer("class_weight", weight, persistent=False)

    def _check(self, logits: Tensor) -> None:
        if self.class_weight is not None and len(self.class_weight) != logits.shape[1]:
            raise ConfigError(
                f"model.loss.class_weight has {len(self.class_weight)} values, "
                f"expected one per class ({logits.shape[1]})"
            )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        self._check(logits)
        return F.cross_entropy(
            logits.float(), target, weight=self.class_weight, ignore_index=self.ignore_index
        )


class OhemCrossEntropyLoss(CrossEntropyLoss):
    """Online hard example mining: keeps pixels whose true-class probability
    is at most ``thresh``, and at least ``min_kept`` of the hardest valid pixels
    (all valid pixels when fewer exist). Ignored pixels are never kept. The
    mean is over kept pixels, weighted by ``class_weight`` like
    ``F.cross_entropy``; with nothing to keep the loss is a differentiable 0.

    forward(logits (B, K, H, W), target (B, H, W)) -> scalar.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        class_weight: Sequence[float] | None = None,
        thresh: float = 0.7,
        min_kept: int = 100000,
    ) -> None:
        super().__init__(ignore_index, class_weight)
        self.thresh = thresh
        self.min_kept = min_kept

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        self._check(logits)
        logits = logits.float()
        with torch.no_grad():
            valid = target != self.ignore_index
            prob = logits.softmax(dim=1)
            true_prob = prob.gather(1, target.clamp(0, logits.shape[1] - 1).unsqueeze(1))[:, 0]
            true_prob = true_prob.masked_fill(~valid, 1.0)
            num_valid = int(valid.sum())
            threshold = self.thresh
            if num_valid > 0 and self.min_kept > 0:
                k = min(num_valid, self.min_kept)
                kth = true_prob[valid].kthvalue(k).values.item()
                threshold = max(threshold, kth)
            keep = valid & (true_prob <= threshold)
        pixel_loss = F.cross_entropy(
            logits,
            target,
            weight=self.class_weight,
            ignore_index=self.ignore_index,
            reduction="none",
        )
        if not keep.any():
            return pixel_loss.sum() * 0.0
        if self.class_weight is None:
            return pixel_loss[keep].mean()
        weights = self.class_weight[target.clamp(0, logits.shape[1] - 1)]
        return pixel_loss[keep].sum() / weights[keep].sum()
