"""Colouring masks with a palette, resizing and blending them over images, and
the image | truth | prediction grid: the one home of these pixel helpers for
TensorBoard, prediction overlays and the dataset browser."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from ann.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def colorize(
    mask: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = 255
) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours; ignore pixels white."""
    lut = np.full((256, 3), 255, dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    if ignore_index < 256:
        lut[ignore_index] = 255
    return lut[mask.astype(np.uint8)]


def resize_rgb(image: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """(h, w, 3) uint8 -> (H, W, 3) uint8 at ``size`` (H, W): bilinear for a
    photo, ``nearest`` for colour-coded masks (no blended in-between colours)."""
    if image.shape[:2] == tuple(size):
        return image
    method = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(image).resize(tuple(size)[::-1], method))


def blend(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 image and (H, W, 3) mask colours -> (H, W, 3) uint8:
    ``alpha`` of the colours over ``1 - alpha`` of the image."""
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    return mixed.round().clip(0, 255).astype(np.uint8)


def denormalize(image: torch.Tensor, transform: object = None) -> np.ndarray:
    """(3, H, W) normalised tensor -> (H, W, 3) uint8 RGB, by the dataset
    transform's own ``to_rgb`` where it has one (its mean, std and channel
    order), else by the ImageNet mean and std."""
    if hasattr(transform, "to_rgb"):
        return transform.to_rgb(image)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = (image.cpu().float() * std + mean).clamp(0, 1) * 255
    return rgb.permute(1, 2, 0).round().byte().numpy()


@torch.no_grad()
def overlay_panel(
    image: np.ndarray,
    pred: np.ndarray,
    palette: Sequence[Sequence[int]],
    gt: np.ndarray | None = None,
    ignore_index: int = 255,
    alpha: float = 0.5,
) -> np.ndarray:
    """Side by side: image | ground truth colours (if given) | prediction
    blended over the image. ``image`` (h, w, 3) uint8 is resized to ``pred``'s
    (H, W); returns (H, 2W or 3W, 3) uint8."""
    image = resize_rgb(image, pred.shape)
    panels = [image]
    if gt is not None:
        panels.append(colorize(gt, palette, ignore_index))
    panels.append(blend(image, colorize(pred, palette), alpha))
    return np.concatenate(panels, axis=1)


def prediction_grid(
    model: nn.Module, dataset: Dataset, device: torch.device, count: int = 4
) -> np.ndarray:
    """Rows of image | ground truth | prediction for the first ``count`` samples:
    (count·H, 3·W, 3) uint8 (rows resized to the first sample's size)."""
    was_training = model.training
    model.eval()
    rows = []
    for i in range(min(count, len(dataset))):
        sample = dataset[i]
        image = sample["image"].unsqueeze(0).to(device)
        logits = model(image)
        mask = sample["mask"].numpy()
        if tuple(logits.shape[-2:]) != mask.shape:
            logits = torch.nn.functional.interpolate(logits, size=mask.shape, mode="bilinear")
        pred = logits.argmax(1)[0].cpu().numpy()
        rgb = denormalize(sample["image"], getattr(dataset, "transforms", None))
        rgb = resize_rgb(rgb, mask.shape)
        row = np.concatenate(
            [
                rgb,
                colorize(mask, dataset.palette, dataset.ignore_index),
                colorize(pred, dataset.palette),
            ],
            axis=1,
        )
        if rows:
            row = resize_rgb(row, rows[0].shape[:2], nearest=True)
        rows.append(row)
    model.train(was_training)
    return np.concatenate(rows, axis=0)
