"""Turning a model and an image into class scores: whole-image inference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def infer_whole(model: nn.Module, image: Tensor) -> Tensor:
    """Logits of the whole image at once: (B, 3, H, W) -> (B, K, H, W)."""
    return model(image)


@torch.no_grad()
def predict_scores(
    model: nn.Module,
    image: Tensor,
    out_size: tuple[int, int],
    mode: str = "whole",
    align_corners: bool = False,
) -> Tensor:
    """Softmax scores for ``image`` (B, 3, H, W) resized to ``out_size``:
    returns (B, K, *out_size)."""
    if mode != "whole":
        raise ValueError(f"evaluator.mode must be 'whole', got {mode!r}")
    logits = infer_whole(model, image)
    if tuple(logits.shape[-2:]) != tuple(out_size):
        logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=align_corners)
    return logits.softmax(dim=1)
