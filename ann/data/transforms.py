"""Training and evaluation transforms built on albumentations.

Images are (H, W, 3) uint8 RGB, labels (H, W) uint8; both leave as tensors:
image (3, H, W) float32 normalised, mask (H, W) int64. Masks are always
resampled with nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def rescale_size(
    height: int, width: int, scale: Sequence[int] | None, ratio: float = 1.0
) -> tuple[int, int]:
    """Output (H, W) of a keep-ratio resize into ``scale`` × ``ratio``.

    ``scale`` is (long side, short side) as in mmsegmentation's (2048, 1024):
    the image is scaled by the largest factor with which its long side fits
    the long bound and its short side fits the short bound. None scales by
    ``ratio`` alone.
    """
    if scale is None:
        factor = ratio
    else:
        long_bound, short_bound = max(scale) * ratio, min(scale) * ratio
        factor = min(long_bound / max(height, width), short_bound / min(height, width))
    return max(int(height * factor + 0.5), 1), max(int(width * factor + 0.5), 1)


class RandomRescale(A.DualTransform):
    """Keep-ratio resize to ``scale`` times a ratio drawn from ``ratio_range``."""

    def __init__(
        self,
        scale: Sequence[int] | None = None,
        ratio_range: Sequence[float] = (0.5, 2.0),
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.scale = tuple(scale) if scale is not None else None
        self.ratio_range = tuple(ratio_range)

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict[str, Any]:
        height, width = params["shape"][:2]
        ratio = self.py_random.uniform(*self.ratio_range)
        return {"size": rescale_size(height, width, self.scale, ratio)}

    def apply(self, img: np.ndarray, size: tuple[int, int], **params: Any) -> np.ndarray:
        return cv2.resize(img, size[::-1], interpolation=cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, size: tuple[int, int], **params: Any) -> np.ndarray:
        return cv2.resize(mask, size[::-1], interpolation=cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio_range")


class CatMaxRatioCrop(A.DualTransform):
    """Random crop that retries (up to ``max_tries``) while one class covers
    more than ``cat_max_ratio`` of the crop's labelled pixels, as in
    mmsegmentation's RandomCrop. The image must already be at least the crop.
    """

    def __init__(
        self,
        height: int,
        width: int,
        cat_max_ratio: float = 1.0,
        ignore_index: int = 255,
        max_tries: int = 10,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.height, self.width = height, width
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index
        self.max_tries = max_tries

    def _random_box(self, height: int, width: int) -> tuple[int, int]:
        return (
            self.py_random.randint(0, height - self.height),
            self.py_random.randint(0, width - self.width),
        )

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict[str, Any]:
        height, width = params["shape"][:2]
        top, left = self._random_box(height, width)
        mask = data.get("mask")
        if self.cat_max_ratio < 1.0 and mask is not None:
            for _ in range(self.max_tries):
                crop = mask[top : top + self.height, left : left + self.width]
                _, counts = np.unique(crop[crop != self.ignore_index], return_counts=True)
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                top, left = self._random_box(height, width)
        return {"top": top, "left": left}

    def apply(self, img: np.ndarray, top: int, left: int, **params: Any) -> np.ndarray:
        return img[top : top + self.height, left : left + self.width]

    def apply_to_mask(self, mask: np.ndarray, top: int, left: int, **params: Any) -> np.ndarray:
        return mask[top : top + self.height, left : left + self.width]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("height", "width", "cat_max_ratio", "ignore_index", "max_tries")


class _Pipeline:
    """An albumentations pipeline whose randomness can be seeded per sample."""

    def __init__(self, ops: list, mean: Sequence[float], std: Sequence[float]) -> None:
        self.compose = A.Compose(ops)
        self.mean = np.asarray(mean, dtype=np.float32) * 255.0
        self.inv_std = 1.0 / (np.asarray(std, dtype=np.float32) * 255.0)

    def to_tensors(self, image: np.ndarray, mask: np.ndarray) -> tuple[Tensor, Tensor]:
        image = (image.astype(np.float32) - self.mean) * self.inv_std
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return image_t, torch.from_numpy(mask.astype(np.int64))

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """(H, W, 3) uint8, (H, W) uint8 -> (3, h, w) float32, (h, w) int64."""
        if seed is not None:
            self.compose.set_random_seed(seed)
        out = self.compose(image=image, mask=mask)
        return self.to_tensors(out["image"], out["mask"])


class TrainTransform(_Pipeline):
    """Random rescale, pad (image 0, mask ignore), crop with cat_max_ratio,
    horizontal flip, photometric distortion, normalise.

    Args:
        crop_size: (H, W) of the training crop.
        scale: (long, short) base scale for the random rescale; None rescales
            the original size.
        ratio_range: range of the random rescale ratio.
        cat_max_ratio: max fraction of one class in a crop (1.0 disables).
    """

    def __init__(
        self,
        crop_size: Sequence[int],
        scale: Sequence[int] | None = None,
        ratio_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 1.0,
        flip_prob: float = 0.5,
        photometric: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        ignore_index: int = 255,
    ) -> None:
        crop_h, crop_w = crop_size
        ops: list = [
            RandomRescale(scale, ratio_range),
            A.PadIfNeeded(
                crop_h,
                crop_w,
                position="top_left",
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=ignore_index,
            ),
            CatMaxRatioCrop(crop_h, crop_w, cat_max_ratio, ignore_index),
            A.HorizontalFlip(p=flip_prob),
        ]
        if photometric:
            # mmsegmentation's PhotoMetricDistortion: brightness ±32, contrast and
            # saturation 0.5–1.5, hue ±18°, each applied with probability 0.5.
            ops += [
                A.RandomBrightnessContrast(
                    brightness_limit=32 / 255, contrast_limit=0.5, brightness_by_max=True, p=0.5
                ),
                A.HueSaturationValue(
                    hue_shift_limit=9, sat_shift_limit=(-30, 30), val_shift_limit=0, p=0.5
                ),
            ]
        super().__init__(ops, mean, std)


class EvalTransform(_Pipeline):
    """Keep-ratio resize of the image to ``scale`` (None keeps its size), normalise.

    The mask keeps its original resolution: metrics are computed there.
    """

    def __init__(
        self,
        scale: Sequence[int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__([], mean, std)
        self.scale = tuple(scale) if scale is not None else None

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int | None = None
    ) -> tuple[Tensor, Tensor]:
        if self.scale is not None:
            size = rescale_size(*image.shape[:2], self.scale)
            image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
        return self.to_tensors(image, mask)
