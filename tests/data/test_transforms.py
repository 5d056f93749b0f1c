"""The training transforms of the reference recipes: alignment, mask values, padding, fidelity."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from ann.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    PhotoMetricDistortion,
    RandomRescaleCrop,
    TrainTransform,
    rescale_size,
)

MEAN = torch.tensor(IMAGENET_MEAN)[:, None, None] * 255
STD = torch.tensor(IMAGENET_STD)[:, None, None] * 255


def _pattern(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """White blocks on black (grey, so photometric colour steps keep them apart)
    and the mask derived from the image: 1 where white, 0 elsewhere, 255 on a
    void strip (black too)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((h, w, 3), np.uint8)
    for _ in range(8):
        y, x = rng.integers(0, h - 12), rng.integers(0, w - 12)
        image[y : y + rng.integers(6, 12), x : x + rng.integers(6, 12)] = 255
    mask = (image[..., 0] > 127).astype(np.uint8)
    mask[: h // 10] = np.where(mask[: h // 10] == 1, 1, 255)
    return image, mask


@pytest.mark.parametrize(
    ("size", "crop", "scale", "ratio"),
    [
        ((90, 121), (48, 64), None, (0.5, 2.0)),
        ((97, 203), (64, 128), (256, 128), (0.5, 2.0)),
        ((41, 53), (64, 64), None, (0.5, 1.2)),
    ],
)
def test_image_and_mask_stay_aligned(size, crop, scale, ratio) -> None:
    """Every transform on (rescale, cat_max_ratio crop, pad, flip, photometric):
    the mask derived from the image still matches the transformed image."""
    image, mask = _pattern(*size)
    t = TrainTransform(crop, scale=scale, ratio_range=ratio, cat_max_ratio=0.75)
    for seed in range(24):
        img, m = t(image, mask, seed=seed)
        assert img.shape == (3, *crop) and m.shape == crop and m.dtype == torch.int64
        assert set(m.unique().tolist()) <= {0, 1, 255}
        pixels = (img * STD + MEAN).mean(0)  # back to 0..255
        labelled = m != 255
        if (m == 1).any() and (m == 0).any():
            threshold = (pixels[m == 1].median() + pixels[m == 0].median()) / 2
            agree = ((pixels > threshold) == (m == 1))[labelled].float().mean()
            # Bilinear images against nearest masks can differ on a 1-pixel rim.
            assert agree > 0.93, (seed, float(agree))


def test_mask_values_stay_in_allowed_set() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (77, 131, 3), dtype=np.uint8)
    mask = rng.choice(np.array([*range(19), 255], np.uint8), (77, 131))
    t = TrainTransform((64, 96), scale=(200, 100), cat_max_ratio=0.75)
    for seed in range(10):
        _, m = t(image, mask, seed=seed)
        assert set(m.unique().tolist()) <= {*range(19), 255}


def test_padding_values() -> None:
    """A crop bigger than the rescaled image is padded bottom/right: image 0
    after normalising (the mean colour, as mmsegmentation), mask 255."""
    image = np.full((30, 40, 3), 200, np.uint8)
    mask = np.ones((30, 40), np.uint8)
    t = TrainTransform((64, 80), scale=None, ratio_range=(1.0, 1.0), photometric=False)
    img, m = t(image, mask, seed=0)
    assert (img[:, 30:] == 0).all() and (img[:, :, 40:] == 0).all()
    assert (m[30:] == 255).all() and (m[:, 40:] == 255).all() and (m[:30, :40] == 1).all()
    assert torch.allclose(img[:, :30, :40], (200 - MEAN) / STD)


def test_fused_rescale_crop_equals_resize_then_crop() -> None:
    """Resampling only the crop gives what a full cv2.resize then crop gives:
    the image to within 1 grey level, the mask exactly as mmcv's nearest
    (cv2.INTER_NEAREST) resize."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (103, 151, 3), dtype=np.uint8), (5, 5), 0)
    mask = rng.integers(0, 5, (103, 151)).astype(np.uint8)
    for ratio in (0.6, 1.0, 1.7):
        op = RandomRescaleCrop(40, 50, scale=(300, 200), ratio_range=(ratio, ratio))
        op.set_random_seed(3)
        params = op.get_params_dependent_on_data({"shape": image.shape}, {"mask": mask})
        top, left = params["top"], params["left"]
        h, w = rescale_size(103, 151, (300, 200), ratio)
        full = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        full_mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        crop = op.apply(image, **params)
        diff = np.abs(full[top : top + 40, left : left + 50].astype(int) - crop)
        assert diff.max() <= 1, ratio
        np.testing.assert_array_equal(
            op.apply_to_mask(mask, **params), full_mask[top : top + 40, left : left + 50]
        )


def test_cat_max_ratio_retries_dominated_crops() -> None:
    mask = np.zeros((100, 200), np.uint8)
    mask[:, 150:] = 1  # class 0 dominates most crops
    image = np.zeros((100, 200, 3), np.uint8)

    def mixed_fraction(ratio: float) -> float:
        op = RandomRescaleCrop(50, 50, None, (1.0, 1.0), cat_max_ratio=ratio)
        compose, hits = A.Compose([op]), 0
        for seed in range(40):
            compose.set_random_seed(seed)
            crop = compose(image=image, mask=mask)["mask"]
            hits += 0.25 < crop.mean() < 0.75
        return hits / 40

    assert mixed_fraction(0.75) > mixed_fraction(1.0) + 0.3


def test_photometric_matches_mmsegmentation_formulas() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    op = PhotoMetricDistortion()
    out = op.apply(img, beta=20.0, alpha=1.3, contrast_first=True, sat=None, hue=None)
    step = np.clip(img.astype(np.float32) + 20.0, 0, 255).astype(np.uint8)
    want = np.clip(step.astype(np.float32) * 1.3, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, want)
    out = op.apply(img, beta=None, alpha=None, contrast_first=False, sat=None, hue=10)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(int) + 10) % 180
    np.testing.assert_array_equal(out, cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))
    grey = np.full((4, 4, 3), 90, np.uint8)  # no colour: saturation and hue keep it grey
    out = op.apply(grey, beta=None, alpha=None, contrast_first=False, sat=1.4, hue=-7)
    np.testing.assert_array_equal(out, grey)


def test_seeded_and_eval_keeps_label_resolution() -> None:
    image, mask = _pattern(97, 203)
    t = TrainTransform((64, 64), scale=(256, 128), cat_max_ratio=0.75)
    a, b = t(image, mask, seed=5), t(image, mask, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], t(image, mask, seed=6)[0])
    img, m = EvalTransform(scale=(512, 256))(image, mask)
    assert img.shape == (3, 245, 512)  # long side 203 -> 512 bounds it and m.shape == (97, 203)
    assert torch.equal(m, torch.from_numpy(mask.astype(np.int64)))


def test_bgr_channel_order_and_its_inverse() -> None:
    """The authors' input: BGR, pixel - Caffe mean, std 1; to_rgb undoes it."""
    import torch

    from ann.data.transforms import EvalTransform

    mean = [102.9801 / 255, 115.9465 / 255, 122.7717 / 255]
    t = EvalTransform(mean=mean, std=[1 / 255] * 3, channel_order="bgr")
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    image, _ = t(rgb, np.zeros((7, 9), np.uint8))
    expected = rgb[..., ::-1].astype(np.float32) - np.array([102.9801, 115.9465, 122.7717])
    torch.testing.assert_close(image, torch.from_numpy(expected).permute(2, 0, 1).float())
    assert (t.to_rgb(image) == rgb).all()
    assert (EvalTransform().to_rgb(EvalTransform()(rgb, rgb[..., 0])[0]) == rgb).all()
