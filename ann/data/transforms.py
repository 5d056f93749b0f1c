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

from ann.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def rescale_size(
    height: int, width: int, scale: Sequence[int] | None, ratio: float = 1.0
) -> tuple[int, int]:
    """Output (H, W) of a keep-ratio resize into ``scale`` × ``ratio``.

    ``scale`` is (long side, short side) as in mmsegmentation's (2048, 1024):
    the image is scaled by the largest factor with which its long side fits
    the long bound and its short side fits the short bound. The bounds are
    ``scale`` × ``ratio`` truncated to integers, as mmcv's RandomResize
    truncates them before rescaling (2048 × 0.7371 bounds at 1509, not
    1509.6, which changes the output size). None scales by ``ratio`` alone.
    """
    if scale is None:
        factor = ratio
    else:
        long_bound, short_bound = int(max(scale) * ratio), int(min(scale) * ratio)
        factor = min(long_bound / max(height, width), short_bound / min(height, width))
    return max(int(height * factor + 0.5), 1), max(int(width * factor + 0.5), 1)


class RandomRescaleCrop(A.DualTransform):
    """Keep-ratio resize to ``scale`` × a ratio from ``ratio_range``, then a random
    crop of at most (``height``, ``width``) retried (up to ``max_tries``) while one
    class covers ``cat_max_ratio`` or more of its labelled pixels — mmsegmentation's
    RandomResize + RandomCrop. A side shorter than the crop is kept whole (the
    pipeline pads afterwards).

    Only the crop is ever resampled: the image pixels are interpolated straight
    from the source with the same sampling positions as a full bilinear resize
    (half-pixel centres, edge clamping), so a 2× upscale of a 2048×1024 image
    costs a 512×1024 crop, not a 4096×2048 resize. The mask takes the pixels
    OpenCV's ``INTER_NEAREST`` resize would (mmcv's nearest), so it equals
    mmsegmentation's resized-then-cropped label exactly.

    Besides what ``apply`` needs, the params (``self.params`` after a call)
    record the draws: ``ratio`` and every crop origin tried, in order
    (``offsets``), so a test can replay them through another implementation.
    """

    def __init__(
        self,
        height: int,
        width: int,
        scale: Sequence[int] | None = None,
        ratio_range: Sequence[float] = (0.5, 2.0),
        cat_max_ratio: float = 1.0,
        ignore_index: int = 255,
        max_tries: int = 10,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.height, self.width = height, width
        self.scale = tuple(scale) if scale is not None else None
        self.ratio_range = tuple(ratio_range)
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index
        self.max_tries = max_tries

    @staticmethod
    def _source_index(start: int, length: int, factor: float, limit: int) -> np.ndarray:
        """Source pixel of each of ``length`` output pixels from ``start``: (length,) int.

        OpenCV's nearest resize takes floor(x · (1 / factor)) in double precision,
        with no half-pixel shift; the same expression keeps every index equal.
        """
        idx = np.floor(np.arange(start, start + length) * (1.0 / factor)).astype(np.int64)
        return np.minimum(idx, limit - 1)

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict[str, Any]:
        height, width = params["shape"][:2]
        ratio = self.py_random.uniform(*self.ratio_range)
        out_h, out_w = rescale_size(height, width, self.scale, ratio)
        crop_h, crop_w = min(self.height, out_h), min(self.width, out_w)
        fy, fx = out_h / height, out_w / width

        offsets: list[tuple[int, int]] = []

        def box() -> tuple[int, int, np.ndarray, np.ndarray]:
            top = self.py_random.randint(0, out_h - crop_h)
            left = self.py_random.randint(0, out_w - crop_w)
            offsets.append((top, left))
            rows = self._source_index(top, crop_h, fy, height)
            cols = self._source_index(left, crop_w, fx, width)
            return top, left, rows, cols

        top, left, rows, cols = box()
        mask = data.get("mask")
        if self.cat_max_ratio < 1.0 and mask is not None:
            for _ in range(self.max_tries):
                counts = np.bincount(mask[np.ix_(rows, cols)].ravel(), minlength=256)
                counts[self.ignore_index] = 0
                if (counts > 0).sum() > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                top, left, rows, cols = box()
        return {
            "top": top,
            "left": left,
            "factor": (fy, fx),
            "crop": (crop_h, crop_w),
            "rows": rows,
            "cols": cols,
            "ratio": ratio,
            "offsets": offsets,
        }

    def apply(
        self,
        img: np.ndarray,
        top: int,
        left: int,
        factor: tuple[float, float],
        crop: tuple[int, int],
        **params: Any,
    ) -> np.ndarray:
        fy, fx = factor
        # Output pixel (y, x) samples the source at ((y + top + .5) / fy - .5, ...),
        # exactly where a full cv2.resize would have put it.
        matrix = np.array(
            [[1 / fx, 0, (left + 0.5) / fx - 0.5], [0, 1 / fy, (top + 0.5) / fy - 0.5]],
            dtype=np.float64,
        )
        return cv2.warpAffine(
            img,
            matrix,
            (crop[1], crop[0]),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def apply_to_mask(
        self, mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, **params: Any
    ) -> np.ndarray:
        return mask[np.ix_(rows, cols)]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("height", "width", "scale", "ratio_range", "cat_max_ratio", "ignore_index")


class PhotoMetricDistortion(A.ImageOnlyTransform):
    """mmsegmentation's PhotoMetricDistortion on uint8 RGB, each step with
    probability 0.5: brightness ± ``brightness_delta``, contrast ×[0.5, 1.5]
    (before or after the colour steps, at random), saturation ×[0.5, 1.5],
    hue shift in [−``hue_delta``, ``hue_delta``) on OpenCV's 0–180 hue scale
    (mmsegmentation draws it with ``np.random.randint``, whose upper bound is
    exclusive). Implemented with lookup tables; saturation and hue each make
    their own HSV round trip through uint8 RGB, as mmsegmentation does, since
    a shared round trip rounds differently."""

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    def get_params(self) -> dict[str, Any]:
        r = self.py_random

        def coin() -> bool:
            return r.random() < 0.5

        beta = r.uniform(-self.brightness_delta, self.brightness_delta) if coin() else None
        contrast_first = coin()
        alpha = r.uniform(*self.contrast_range) if coin() else None
        sat = r.uniform(*self.saturation_range) if coin() else None
        hue = r.randint(-self.hue_delta, self.hue_delta - 1) if coin() else None
        return {
            "beta": beta,
            "alpha": alpha,
            "contrast_first": contrast_first,
            "sat": sat,
            "hue": hue,
        }

    @staticmethod
    def _affine(lut: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        # As mmsegmentation: float, clip to [0, 255], truncate to uint8 after every step.
        return np.clip(lut.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    @staticmethod
    def _hsv_lut(
        img: np.ndarray, h_lut: np.ndarray | None = None, s_lut: np.ndarray | None = None
    ) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> HSV, hue and saturation through (256,) tables -> RGB."""
        identity = np.arange(256, dtype=np.uint8)
        h = identity if h_lut is None else h_lut.astype(np.uint8)
        s = identity if s_lut is None else s_lut
        luts = np.stack([h, s, identity], axis=-1)[None]
        return cv2.cvtColor(cv2.LUT(cv2.cvtColor(img, cv2.COLOR_RGB2HSV), luts), cv2.COLOR_HSV2RGB)

    def apply(
        self,
        img: np.ndarray,
        beta: float | None,
        alpha: float | None,
        contrast_first: bool,
        sat: float | None,
        hue: int | None,
        **params: Any,
    ) -> np.ndarray:
        identity = np.arange(256, dtype=np.uint8)
        lut = self._affine(identity, beta=beta) if beta is not None else identity
        if alpha is not None and contrast_first:
            lut = self._affine(lut, alpha=alpha)
        if beta is not None or (alpha is not None and contrast_first):
            img = cv2.LUT(img, lut)
        if sat is not None:
            img = self._hsv_lut(img, s_lut=self._affine(identity, alpha=sat))
        if hue is not None:
            img = self._hsv_lut(img, h_lut=((identity.astype(np.int64) + hue) % 180))
        if alpha is not None and not contrast_first:
            img = cv2.LUT(img, self._affine(identity, alpha=alpha))
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness_delta", "contrast_range", "saturation_range", "hue_delta")


class _Pipeline:
    """An albumentations pipeline whose randomness can be seeded per sample."""

    # Training pads every sample to the crop size; evaluation keeps sizes.
    pad_to: tuple[int, int] | None = None
    ignore_index: int = 255

    def __init__(
        self, ops: list, mean: Sequence[float], std: Sequence[float], channel_order: str = "rgb"
    ) -> None:
        if channel_order not in ("rgb", "bgr"):
            raise ConfigError(
                f"transforms.channel_order must be 'rgb' or 'bgr', got {channel_order!r}"
            )
        self.compose = A.Compose(ops)
        # mean and std are fractions of 255 per channel, in the model's channel order.
        self.mean = np.asarray(mean, dtype=np.float32) * 255.0
        self.inv_std = 1.0 / (np.asarray(std, dtype=np.float32) * 255.0)
        self.bgr = channel_order == "bgr"
        self._mean_t = torch.from_numpy(self.mean)[:, None, None]
        self._inv_std_t = torch.from_numpy(self.inv_std)[:, None, None]

    def to_rgb(self, image: Tensor) -> np.ndarray:
        """Undoes the normalisation: (3, H, W) model input -> (H, W, 3) uint8 RGB."""
        pixels = image.detach().cpu().float() / self._inv_std_t + self._mean_t
        if self.bgr:
            pixels = pixels.flip(0)
        return pixels.clamp(0, 255).permute(1, 2, 0).round().byte().numpy()

    def to_tensors(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        pad_to: Sequence[int] | None = None,
        ignore_index: int = 255,
    ) -> tuple[Tensor, Tensor]:
        """(h, w, 3) uint8, (h, w) uint8 -> normalised (3, H, W) float32, (H, W) int64.

        With ``pad_to`` = (H, W) the result is padded at the bottom and right
        with 0 in the *normalised* image (the mean colour) and ``ignore_index``
        in the mask, as mmsegmentation pads after normalising.
        """

        def padded(h: int, w: int) -> tuple[int, int]:
            return (h, w) if pad_to is None else (max(h, pad_to[0]), max(w, pad_to[1]))

        # The image and the mask may differ in size (evaluation keeps the label's).
        h, w = image.shape[:2]
        image_t = torch.zeros(3, *padded(h, w), dtype=torch.float32)
        region = image_t[:, :h, :w]
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        region.copy_(pixels.flip(0) if self.bgr else pixels)
        region.sub_(self._mean_t).mul_(self._inv_std_t)
        h, w = mask.shape
        mask_t = torch.full(padded(h, w), ignore_index, dtype=torch.int64)
        mask_t[:h, :w] = torch.from_numpy(np.ascontiguousarray(mask))
        return image_t, mask_t

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """(H, W, 3) uint8, (H, W) uint8 -> (3, h, w) float32, (h, w) int64."""
        if seed is not None:
            self.compose.set_random_seed(seed)
        out = self.compose(image=image, mask=mask)
        return self.to_tensors(out["image"], out["mask"], self.pad_to, self.ignore_index)


class TrainTransform(_Pipeline):
    """The reference recipes' training augmentation (docs/reference.md), in
    mmsegmentation's order: random keep-ratio rescale of ``scale`` by a ratio
    in ``ratio_range``, random crop
    with ``cat_max_ratio`` (10 retries), horizontal flip, photometric
    distortion, normalise, pad to ``crop_size`` (image 0 after normalising,
    mask ``ignore_index``). Masks are always sampled nearest.

    Args:
        crop_size: (H, W) of the training crop; every output has this size.
        scale: (long, short) base scale for the random rescale; None rescales
            the original size.
        ratio_range: range of the random rescale ratio.
        cat_max_ratio: max fraction of one class in a crop (1.0 disables).
        flip_prob: probability of a horizontal flip.
        photometric: apply :class:`PhotoMetricDistortion`.
        mean, std: per channel, as fractions of 255, in the model's channel order.
        channel_order: ``"rgb"`` or ``"bgr"`` (the authors' release reads BGR).
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
        channel_order: str = "rgb",
    ) -> None:
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.pad_to = self.crop_size
        self.ignore_index = ignore_index
        ops: list = [
            RandomRescaleCrop(*self.crop_size, scale, ratio_range, cat_max_ratio, ignore_index),
            A.HorizontalFlip(p=flip_prob),
        ]
        if photometric:
            ops.append(PhotoMetricDistortion())
        super().__init__(ops, mean, std, channel_order)


class EvalTransform(_Pipeline):
    """Keep-ratio resize of the image to ``scale`` (None keeps its size), normalise.

    The mask keeps its original resolution: metrics are computed there.
    ``mean``, ``std`` and ``channel_order`` as for :class:`TrainTransform`.
    """

    def __init__(
        self,
        scale: Sequence[int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        channel_order: str = "rgb",
    ) -> None:
        super().__init__([], mean, std, channel_order)
        self.scale = tuple(scale) if scale is not None else None

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int | None = None
    ) -> tuple[Tensor, Tensor]:
        if self.scale is not None:
            size = rescale_size(*image.shape[:2], self.scale)
            image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
        return self.to_tensors(image, mask)
