"""mmsegmentation 1.2.2's data pipelines, re-implemented for the parity tests.

Written from the mmseg 1.2.2 and mmcv 2.x sources, without importing either:

- ``RandomResize(scale, ratio_range, keep_ratio=True)`` (mmcv): ratio =
  ``random_sample() * (hi - lo) + lo``; target scale ``(int(w * ratio),
  int(h * ratio))``, truncated; then ``Resize(keep_ratio=True)``, i.e.
  ``imrescale``: factor = min(long bound / long side, short bound / short
  side), new size ``int(w * f + 0.5), int(h * f + 0.5)``, ``cv2.resize``
  bilinear for the image and nearest for the label.
- ``RandomCrop(crop_size, cat_max_ratio)`` (mmseg): offsets
  ``randint(0, margin + 1)`` (height first); while the crop's label counts,
  ignore index left out, have a single class or one class at
  ``cat_max_ratio`` or more, draw again, up to 10 times; the last draw is
  kept unchecked.
- ``RandomFlip(prob)`` (mmcv): ``choice(['horizontal', None], p=[prob, 1 - prob])``.
- ``PhotoMetricDistortion()`` (mmseg): brightness, contrast (mode 1), an HSV
  round trip for saturation, another for hue, contrast (mode 0); each step
  is ``randint(2)``-gated and clips to [0, 255] and truncates to uint8.
- ``LoadAnnotations(reduce_zero_label=True)`` and the test-time ``Resize``.

Images are BGR uint8, as mmseg's ``LoadImageFromFile`` reads them. Every
random call goes through a draw source whose methods map one to one onto
mmseg's call sites: :class:`NumpyDraws` calls ``np.random`` as mmseg does,
:class:`ReplayDraws` returns draws recorded elsewhere (our pipeline's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


def scale_size(size: tuple[int, int], factor: float) -> tuple[int, int]:
    """mmcv ``_scale_size``: (w, h) -> (int(w·f + 0.5), int(h·f + 0.5))."""
    w, h = size
    return int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)


def rescale_size(size: tuple[int, int], scale: tuple[int, int]) -> tuple[tuple[int, int], float]:
    """mmcv ``rescale_size`` with a (long, short) tuple: (new (w, h), factor)."""
    w, h = size
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return scale_size((w, h), factor), factor


def imrescale(img: np.ndarray, scale: tuple[int, int], interpolation: str) -> np.ndarray:
    """mmcv ``imrescale`` on the cv2 backend: keep-ratio resize into ``scale``."""
    h, w = img.shape[:2]
    new_size, _ = rescale_size((w, h), scale)
    code = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[interpolation]
    return cv2.resize(img, new_size, interpolation=code)


class NumpyDraws:
    """mmseg's own draws from the global ``np.random`` state, in its order."""

    def resize_ratio(self, lo: float, hi: float) -> float:
        return np.random.random_sample() * (hi - lo) + lo

    def crop_offset(self, margin_h: int, margin_w: int) -> tuple[int, int]:
        return np.random.randint(0, margin_h + 1), np.random.randint(0, margin_w + 1)

    def flip(self, prob: float) -> bool:
        return np.random.choice(["horizontal", None], p=[prob, 1.0 - prob]) is not None

    def brightness(self, delta: float) -> float | None:
        return np.random.uniform(-delta, delta) if np.random.randint(2) else None

    def contrast_mode(self) -> int:
        return int(np.random.randint(2))

    def contrast(self, lo: float, hi: float) -> float | None:
        return np.random.uniform(lo, hi) if np.random.randint(2) else None

    def saturation(self, lo: float, hi: float) -> float | None:
        return np.random.uniform(lo, hi) if np.random.randint(2) else None

    def hue(self, delta: int) -> int | None:
        # numpy's randint excludes the upper bound: shifts are in [-delta, delta).
        return int(np.random.randint(-delta, delta)) if np.random.randint(2) else None


@dataclass
class ReplayDraws:
    """Recorded draws, returned where mmseg would draw them.

    ``offsets`` are the crop origins (top, left) in draw order; each call takes
    the next one and checks it lies in mmseg's range. ``contrast_mode`` is
    mmseg's ``mode``: 1 applies contrast before the colour steps, 0 after.
    """

    ratio: float
    offsets: list[tuple[int, int]]
    flip_: bool
    brightness_: float | None
    contrast_mode_: int
    contrast_: float | None
    saturation_: float | None
    hue_: int | None
    used_offsets: int = field(default=0)

    def resize_ratio(self, lo: float, hi: float) -> float:
        assert lo <= self.ratio <= hi
        return self.ratio

    def crop_offset(self, margin_h: int, margin_w: int) -> tuple[int, int]:
        top, left = self.offsets[self.used_offsets]
        assert 0 <= top <= margin_h and 0 <= left <= margin_w, (top, left, margin_h, margin_w)
        self.used_offsets += 1
        return top, left

    def flip(self, prob: float) -> bool:
        return self.flip_

    def brightness(self, delta: float) -> float | None:
        assert self.brightness_ is None or -delta <= self.brightness_ <= delta
        return self.brightness_

    def contrast_mode(self) -> int:
        return self.contrast_mode_

    def contrast(self, lo: float, hi: float) -> float | None:
        return self.contrast_

    def saturation(self, lo: float, hi: float) -> float | None:
        return self.saturation_

    def hue(self, delta: int) -> int | None:
        assert self.hue_ is None or -delta <= self.hue_ < delta, self.hue_
        return self.hue_


def reduce_zero_label(seg: np.ndarray) -> np.ndarray:
    """mmseg ``LoadAnnotations(reduce_zero_label=True)``: 0 -> 255, k -> k - 1."""
    seg = seg.copy()
    seg[seg == 0] = 255
    seg = seg - 1
    seg[seg == 254] = 255
    return seg


def random_resize(
    img: np.ndarray,
    seg: np.ndarray,
    scale: tuple[int, int],
    ratio_range: tuple[float, float],
    draws: NumpyDraws | ReplayDraws,
) -> tuple[np.ndarray, np.ndarray]:
    """mmcv ``RandomResize(scale, ratio_range, keep_ratio=True)``."""
    ratio = draws.resize_ratio(*ratio_range)
    target = int(scale[0] * ratio), int(scale[1] * ratio)
    return imrescale(img, target, "bilinear"), imrescale(seg, target, "nearest")


def random_crop(
    img: np.ndarray,
    seg: np.ndarray,
    crop_size: tuple[int, int],
    cat_max_ratio: float,
    draws: NumpyDraws | ReplayDraws,
    ignore_index: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg ``RandomCrop``: (h, w) crop, retried for ``cat_max_ratio``."""

    def bbox() -> tuple[int, int, int, int]:
        margin_h = max(img.shape[0] - crop_size[0], 0)
        margin_w = max(img.shape[1] - crop_size[1], 0)
        top, left = draws.crop_offset(margin_h, margin_w)
        return top, top + crop_size[0], left, left + crop_size[1]

    box = bbox()
    if cat_max_ratio < 1.0:
        for _ in range(10):
            labels, cnt = np.unique(seg[box[0] : box[1], box[2] : box[3]], return_counts=True)
            cnt = cnt[labels != ignore_index]
            if len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < cat_max_ratio:
                break
            box = bbox()
    return img[box[0] : box[1], box[2] : box[3], ...], seg[box[0] : box[1], box[2] : box[3]]


def random_flip(
    img: np.ndarray, seg: np.ndarray, prob: float, draws: NumpyDraws | ReplayDraws
) -> tuple[np.ndarray, np.ndarray]:
    """mmcv ``RandomFlip(prob)``, horizontal."""
    if draws.flip(prob):
        return np.flip(img, axis=1), np.flip(seg, axis=1)
    return img, seg


def _convert(img: np.ndarray, alpha: float = 1, beta: float = 0) -> np.ndarray:
    img = img.astype(np.float32) * alpha + beta
    return np.clip(img, 0, 255).astype(np.uint8)


def photo_metric_distortion(
    img: np.ndarray,
    draws: NumpyDraws | ReplayDraws,
    brightness_delta: int = 32,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion`` on a BGR uint8 image."""

    def contrast(img: np.ndarray) -> np.ndarray:
        alpha = draws.contrast(*contrast_range)
        return img if alpha is None else _convert(img, alpha=alpha)

    beta = draws.brightness(brightness_delta)
    if beta is not None:
        img = _convert(img, beta=beta)
    mode = draws.contrast_mode()
    if mode == 1:
        img = contrast(img)
    sat = draws.saturation(*saturation_range)
    if sat is not None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        img[:, :, 1] = _convert(img[:, :, 1], alpha=sat)
        img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
    hue = draws.hue(hue_delta)
    if hue is not None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        img[:, :, 0] = (img[:, :, 0].astype(int) + hue) % 180
        img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
    if mode == 0:
        img = contrast(img)
    return img


def train_pipeline(
    img: np.ndarray,
    seg: np.ndarray,
    draws: NumpyDraws | ReplayDraws,
    scale: tuple[int, int],
    crop_size: tuple[int, int],
    cat_max_ratio: float = 0.75,
    ratio_range: tuple[float, float] = (0.5, 2.0),
    flip_prob: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """RandomResize -> RandomCrop -> RandomFlip -> PhotoMetricDistortion.

    (H, W, 3) BGR uint8, (H, W) uint8 -> (h, w, 3), (h, w) with h, w at most
    ``crop_size``; padding is left to the data preprocessor, as in mmseg.
    """
    img, seg = random_resize(img, seg, scale, ratio_range, draws)
    img, seg = random_crop(img, seg, crop_size, cat_max_ratio, draws)
    img, seg = random_flip(img, seg, flip_prob, draws)
    return photo_metric_distortion(np.ascontiguousarray(img), draws), np.ascontiguousarray(seg)


def eval_resize(img: np.ndarray, scale: tuple[int, int]) -> np.ndarray:
    """mmcv ``Resize(scale, keep_ratio=True)`` of the test pipeline (image only)."""
    return imrescale(img, scale, "bilinear")
