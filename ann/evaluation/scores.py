"""Turning a model and an image into class scores.

Three building blocks, composed by :func:`predict_scores`:

- :func:`infer_whole`: the whole image in one forward pass;
- :func:`infer_slide`: overlapping crop windows, logits averaged with a count
  map (images smaller than the crop are padded to it and cropped back);
- test-time augmentation: any list of scale ratios, each with an optional
  horizontal flip; the outputs are resized to the label size and averaged as
  softmax probabilities (or as logits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.evaluation.options import check_options

# A segmentor, or a function of images with its result (speed.forward_fn).
Model = nn.Module | Callable[[Tensor], Tensor]


@torch.no_grad()
def infer_whole(model: Model, image: Tensor) -> Tensor:
    """Logits of the whole image at once: (B, 3, H, W) -> (B, K, H, W)."""
    return model(image)


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets of windows of length ``crop`` covering ``size`` with step
    ``stride``; the last window is shifted back to end at the border (as in
    mmsegmentation), so no window hangs over the image."""
    if size <= crop:
        return [0]
    count = (size - crop + stride - 1) // stride + 1
    return [min(i * stride, size - crop) for i in range(count)]


@torch.no_grad()
def infer_slide(
    model: Model, image: Tensor, crop_size: Sequence[int], stride: Sequence[int]
) -> Tensor:
    """Sliding-window logits: (B, 3, H, W) -> (B, K, H, W).

    Windows of ``crop_size`` (h, w) every ``stride`` (h, w) pixels; where
    windows overlap their logits are averaged (sum / count map). An image
    smaller than the crop in a dimension is padded at the bottom/right with
    zeros (the mean colour, after normalisation) so that the model sees the
    crop size it was trained on; the padding is cropped off the logits.
    """
    crop_h, crop_w = (int(v) for v in crop_size)
    stride_h, stride_w = (int(v) for v in stride)
    _, _, height, width = image.shape
    pad_h, pad_w = max(crop_h - height, 0), max(crop_w - width, 0)
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h))
    full_h, full_w = image.shape[-2:]
    logits: Tensor | None = None
    count = torch.zeros(1, 1, full_h, full_w, device=image.device, dtype=image.dtype)
    for top in window_starts(full_h, crop_h, stride_h):
        for left in window_starts(full_w, crop_w, stride_w):
            window = image[:, :, top : top + crop_h, left : left + crop_w]
            out = model(window)
            if logits is None:
                logits = out.new_zeros(out.shape[0], out.shape[1], full_h, full_w)
            logits[:, :, top : top + crop_h, left : left + crop_w] += out
            count[:, :, top : top + crop_h, left : left + crop_w] += 1
    assert logits is not None and bool((count > 0).all()), "windows must cover the image"
    logits = logits / count
    return logits[:, :, :height, :width]


def scaled_size(height: int, width: int, ratio: float) -> tuple[int, int]:
    """(H, W) times ``ratio``, rounded half up, at least 1."""
    return max(int(height * ratio + 0.5), 1), max(int(width * ratio + 0.5), 1)


@torch.no_grad()
def predict_scores(
    model: Model,
    image: Tensor,
    out_size: tuple[int, int],
    mode: str = "whole",
    align_corners: bool = False,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    crop_size: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    average: str = "prob",
) -> Tensor:
    """Averaged scores for ``image`` (B, 3, H, W), at ``out_size``: (B, K, *out_size).

    For every ratio in ``scales`` (and, with ``flip``, its mirror image) the
    image is resized (bilinear), run whole or by sliding window, the logits
    are resized to ``out_size`` with the model's ``align_corners`` and turned
    into softmax probabilities (``average="prob"``, the reference recipe) or
    kept as logits (``average="logits"``); the mean over all passes is returned.
    """
    check_options(mode, scales, crop_size, stride, average)
    height, width = image.shape[-2:]
    total: Tensor | None = None
    passes = 0
    for ratio in scales:
        size = scaled_size(height, width, float(ratio))
        scaled = image
        if size != (height, width):
            # The input's own resampling, independent of the model's align_corners.
            scaled = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            x = scaled.flip(-1) if flipped else scaled
            if mode == "slide":
                logits = infer_slide(model, x, crop_size, stride)
            else:
                logits = infer_whole(model, x)
            if flipped:
                logits = logits.flip(-1)
            if tuple(logits.shape[-2:]) != tuple(out_size):
                logits = F.interpolate(
                    logits, size=tuple(out_size), mode="bilinear", align_corners=align_corners
                )
            scores = logits.softmax(dim=1) if average == "prob" else logits
            total = scores if total is None else total + scores
            passes += 1
    assert total is not None
    return total / passes
