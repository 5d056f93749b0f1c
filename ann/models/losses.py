"""Segmentation losses: cross-entropy and OHEM cross-entropy with ignore_index.

Both compute in the logits' dtype (fp64 logits give an fp64 loss), except
half and bfloat16 logits (autocast), which are promoted to float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.errors import ConfigError

# How the per-pixel losses (class-weighted, ignored pixels 0) are averaged:
#   weighted  Σ w·l / Σ w over valid pixels: torch's F.cross_entropy, the
#             authors' nn.CrossEntropyLoss (equal to "valid" without weights);
#   valid     Σ w·l / number of valid pixels: mmseg's avg_non_ignore=True;
#   all       Σ w·l / number of pixels, ignored ones included: mmseg's
#             default avg_non_ignore=False (its ANN recipes; without class
#             weights, which mmseg 1.x would sum instead of counting pixels).
AVERAGES = ("weighted", "valid", "all")
# Which pixels OHEM keeps and how it averages them (OhemCrossEntropyLoss).
OHEM_RULES = ("inclusive", "authors")


def loss_dtype(logits: Tensor) -> torch.dtype:
    """The dtype a loss is computed in: float32 for half/bfloat16 logits
    (their softmax and sums lose too much), otherwise the logits' own."""
    return torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy, averaged as ``average`` says (:data:`AVERAGES`).

    forward(logits (B, K, H, W), target (B, H, W) int64) -> scalar.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        class_weight: Sequence[float] | None = None,
        average: str = "weighted",
    ) -> None:
        super().__init__()
        if average not in AVERAGES:
            raise ConfigError(f"model.loss.average must be one of {AVERAGES}, got {average!r}")
        self.ignore_index = ignore_index
        self.average = average
        weight = torch.tensor(list(class_weight), dtype=torch.float32) if class_weight else None
        self.register_buffer("class_weight", weight, persistent=False)

    def _prepare(self, logits: Tensor) -> tuple[Tensor, Tensor | None]:
        """(logits in :func:`loss_dtype`, class weights in the same dtype or None)."""
        if self.class_weight is not None and len(self.class_weight) != logits.shape[1]:
            raise ConfigError(
                f"model.loss.class_weight has {len(self.class_weight)} values, "
                f"expected one per class ({logits.shape[1]})"
            )
        logits = logits.to(loss_dtype(logits))
        weight = None if self.class_weight is None else self.class_weight.to(logits.dtype)
        return logits, weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits, weight = self._prepare(logits)
        if self.average == "weighted":
            return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)
        pixel = F.cross_entropy(
            logits, target, weight=weight, ignore_index=self.ignore_index, reduction="none"
        )
        count = (
            target.numel() if self.average == "all" else int((target != self.ignore_index).sum())
        )
        # mmseg's weight_reduce_loss adds float32's eps to the count (a relative
        # 3.6e-12 at 2×129×129, measured against mmseg itself).
        return pixel.sum() / (count + torch.finfo(torch.float32).eps)


class OhemCrossEntropyLoss(CrossEntropyLoss):
    """Online hard example mining over the valid pixels, by their true-class
    probability p; ignored pixels are never kept.

    ``rule`` (:data:`OHEM_RULES`):

    * ``"inclusive"``: keeps p <= max(thresh, k-th smallest p), k =
      min(min_kept, valid pixels), so at least ``min_kept`` pixels (all when
      fewer are valid); the mean is class-weighted like ``F.cross_entropy``
      (Σ w·l / Σ w over kept pixels).
    * ``"authors"``: the authors' FSOhemCELoss (MendelXu/ANN
      models/seg/loss/seg_modules.py): keeps p strictly below max(thresh,
      the (min_kept+1)-th smallest p, or the largest when fewer are valid),
      min_kept at least 1, and averages the class-weighted losses by their
      count (Σ w·l / number kept).

    With nothing kept the loss is a differentiable 0. forward(logits
    (B, K, H, W), target (B, H, W)) -> scalar.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        class_weight: Sequence[float] | None = None,
        thresh: float = 0.7,
        min_kept: int = 100000,
        rule: str = "inclusive",
    ) -> None:
        super().__init__(ignore_index, class_weight)
        if rule not in OHEM_RULES:
            raise ConfigError(f"model.loss.rule must be one of {OHEM_RULES}, got {rule!r}")
        self.thresh = thresh
        self.min_kept = min_kept
        self.rule = rule

    def _keep(self, logits: Tensor, target: Tensor) -> Tensor:
        """(B, H, W) bool: the pixels the loss averages over."""
        valid = target != self.ignore_index
        prob = logits.softmax(dim=1)
        true_prob = prob.gather(1, target.clamp(0, logits.shape[1] - 1).unsqueeze(1))[:, 0]
        true_prob = true_prob.masked_fill(~valid, 1.0)
        num_valid = int(valid.sum())
        threshold = self.thresh
        if self.rule == "authors":
            if num_valid > 0:
                # 0-based index min_kept of the sorted probabilities, clamped.
                k = min(max(1, self.min_kept), num_valid - 1) + 1
                threshold = max(threshold, true_prob[valid].kthvalue(k).values.item())
            return valid & (true_prob < threshold)
        if num_valid > 0 and self.min_kept > 0:
            k = min(num_valid, self.min_kept)
            threshold = max(threshold, true_prob[valid].kthvalue(k).values.item())
        return valid & (true_prob <= threshold)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits, weight = self._prepare(logits)
        with torch.no_grad():
            keep = self._keep(logits, target)
        pixel_loss = F.cross_entropy(
            logits, target, weight=weight, ignore_index=self.ignore_index, reduction="none"
        )
        if not keep.any():
            return pixel_loss.sum() * 0.0
        if weight is None or self.rule == "authors":
            return pixel_loss[keep].mean()
        weights = weight[target.clamp(0, logits.shape[1] - 1)]
        return pixel_loss[keep].sum() / weights[keep].sum()
