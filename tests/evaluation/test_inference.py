"""Inference modes with stub models whose outputs are known exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ann.errors import ConfigError
from ann.evaluation.evaluator import Evaluator
from ann.evaluation.metrics import compute_metrics
from ann.evaluation.scores import (
    infer_slide,
    infer_whole,
    predict_scores,
    window_starts,
)

K = 3
STRIPES = (0, 1, 2, 1)  # class of each vertical quarter of the image


class PixelLinear(nn.Module):
    """A 1×1 conv: each pixel's logits are 5 × its (3) channel values, so the
    model is local, translation- and flip-equivariant."""

    align_corners = False

    def forward(self, x: Tensor) -> Tensor:
        return 5.0 * x


class FixedMap(nn.Module):
    """Returns a fixed score map defined on normalised coordinates, whatever
    the input: class ``classes[i]`` on the i-th vertical stripe. Sampling it at
    pixel centres makes it scale-invariant for stripe borders on pixel edges."""

    def __init__(self, classes: tuple[int, ...], align_corners: bool = False) -> None:
        super().__init__()
        self.classes = torch.tensor(classes)
        self.align_corners = align_corners

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        centres = (torch.arange(w) + 0.5) / w
        cls = self.classes[(centres * len(self.classes)).long().clamp(max=len(self.classes) - 1)]
        logits = 4.0 * F.one_hot(cls, K).T.float()  # (K, W)
        return logits[None, :, None, :].expand(b, K, h, w).clone()


def stripe_labels(h: int, w: int) -> np.ndarray:
    """(h, w) int64 labels: STRIPES over four vertical quarters."""
    cols = np.repeat(np.asarray(STRIPES), w // len(STRIPES))
    return np.broadcast_to(cols, (h, w)).astype(np.int64).copy()


def stripe_image(h: int, w: int) -> Tensor:
    """(1, 3, h, w): channel c is +1 where the stripe's class is c, else -1."""
    labels = torch.from_numpy(stripe_labels(h, w))
    return (2.0 * F.one_hot(labels, K).permute(2, 0, 1).float() - 1.0)[None]


# --- building blocks ---------------------------------------------------------


def test_window_starts_cover_and_stay_inside() -> None:
    assert window_starts(10, 16, 8) == [0]
    assert window_starts(16, 16, 8) == [0]
    assert window_starts(20, 8, 6) == [0, 6, 12]
    for size, crop, stride in [(37, 8, 5), (64, 24, 16), (100, 100, 1), (101, 100, 60)]:
        starts = window_starts(size, crop, stride)
        covered = np.zeros(size, bool)
        for s in starts:
            assert 0 <= s and s + crop <= size
            covered[s : s + crop] = True
        assert covered.all()


@pytest.mark.parametrize(
    "crop,stride",
    [((32, 64), (32, 64)), ((48, 80), (8, 8)), ((12, 20), (8, 12)), ((40, 16), (24, 10))],
)
def test_slide_equals_whole_for_a_local_model(crop: tuple, stride: tuple) -> None:
    """Crops >= the image (padded, cropped back), overlapping and uneven windows:
    a per-pixel model gives the whole-image logits in every case."""
    image = torch.randn(2, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    whole = infer_whole(PixelLinear(), image)
    slide = infer_slide(PixelLinear(), image, crop, stride)
    assert slide.shape == whole.shape
    torch.testing.assert_close(slide, whole, rtol=0, atol=1e-6)


def test_slide_averages_overlaps_with_a_count_map() -> None:
    """A model returning the window's top-left offset shows each pixel's value
    is the mean over the windows that cover it."""

    class Ones(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.ones(x.shape[0], 1, *x.shape[-2:]) * x[:, :1, :1, :1]

    image = torch.zeros(1, 3, 1, 10)
    image[0, 0, 0] = torch.arange(10.0)  # window value = its first column index
    out = infer_slide(Ones(), image, (1, 4), (1, 3))  # windows at 0, 3, 6
    expected = torch.tensor([0, 0, 0, 1.5, 3, 3, 4.5, 6, 6, 6])
    torch.testing.assert_close(out[0, 0, 0], expected)


def test_scores_resized_with_the_models_align_corners() -> None:
    image = torch.randn(1, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    for align in (False, True):
        model = PixelLinear()
        model.align_corners = align
        got = predict_scores(model, image, (17, 23), align_corners=align)
        want = F.interpolate(5.0 * image, size=(17, 23), mode="bilinear", align_corners=align)
        torch.testing.assert_close(got, want.softmax(1))


def test_flip_of_a_symmetric_map_changes_nothing() -> None:
    image = torch.zeros(1, 3, 16, 32)
    model = FixedMap((0, 1, 1, 0))
    plain = predict_scores(model, image, (16, 32))
    flipped = predict_scores(model, image, (16, 32), flip=True)
    torch.testing.assert_close(flipped, plain, rtol=0, atol=0)


def test_flip_of_an_asymmetric_map_averages_both() -> None:
    image = torch.zeros(1, 3, 16, 32)
    model = FixedMap((0, 1, 2, 2))
    p = predict_scores(model, image, (16, 32))
    both = predict_scores(model, image, (16, 32), flip=True)
    torch.testing.assert_close(both, (p + p.flip(-1)) / 2)
    logit = predict_scores(model, image, (16, 32), flip=True, average="logits")
    raw = model(image)
    torch.testing.assert_close(logit, (raw + raw.flip(-1)) / 2)


@pytest.mark.parametrize(
    "model,flip", [(FixedMap(STRIPES), False), (PixelLinear(), True)], ids=["fixed", "pixel+flip"]
)
def test_scales_of_a_scale_invariant_output_change_nothing(model: nn.Module, flip: bool) -> None:
    image = stripe_image(32, 64)
    labels = torch.from_numpy(stripe_labels(32, 64))
    for scales in ([1.0], [0.5, 1.0, 1.5], [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]):
        pred = predict_scores(model, image, (32, 64), scales=scales, flip=flip).argmax(1)[0]
        assert torch.equal(pred, labels), scales


def test_bad_options_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError, match="evaluator.mode"):
        Evaluator(mode="tiles")
    with pytest.raises(ConfigError, match="evaluator.crop_size"):
        Evaluator(mode="slide")
    with pytest.raises(ConfigError, match="evaluator.stride"):
        Evaluator(mode="slide", crop_size=[8, 8], stride=[16, 4])
    with pytest.raises(ConfigError, match="evaluator.scales"):
        Evaluator(scales=[])
    with pytest.raises(ConfigError, match="evaluator.average"):
        Evaluator(average="max")
    with pytest.raises(ConfigError, match="evaluator.save_predictions"):
        Evaluator(save_predictions="jpeg")


# --- the evaluator: every mode gives the predictable metrics -----------------


class StripeDataset(torch.utils.data.Dataset):
    """Stripe images (32×64) whose labels (at 64×128, twice the image size)
    match the stripes except a known block of wrong labels and of ignore."""

    classes = ("a", "b", "c")
    palette = ((0, 0, 0), (255, 0, 0), (0, 0, 255))
    ignore_index = 255
    num_classes = K

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> dict:
        mask = stripe_labels(64, 128)
        mask[0:4, 0:8] = 2  # 32 pixels of "a" labelled "c": gt c, pred a
        mask[10:12, 40:50] = 255  # ignored (these are "b" pixels)
        if i == 1:
            mask[:, 96:] = 255  # the last stripe ("b") ignored in the second image
        return {"image": stripe_image(32, 64)[0], "mask": torch.from_numpy(mask), "name": f"s{i}"}


def expected_metrics() -> dict:
    ds = StripeDataset()
    conf = torch.zeros(K, K, dtype=torch.int64)
    for i in range(len(ds)):
        gt = ds[i]["mask"]
        pred = torch.from_numpy(stripe_labels(64, 128))
        valid = gt != 255
        for g, p in zip(gt[valid].tolist(), pred[valid].tolist(), strict=True):
            conf[g, p] += 1
    return compute_metrics(conf, StripeDataset.classes)


EVALUATORS = {
    "whole": {},
    "slide-crop>=image": {"mode": "slide", "crop_size": [48, 96], "stride": [32, 64]},
    "slide-overlap": {"mode": "slide", "crop_size": [16, 24], "stride": [8, 16]},
    "scales": {"scales": [0.5, 0.75, 1.0, 1.5]},
    "flip": {"flip": True},
    "slide+scales+flip": {
        "mode": "slide",
        "crop_size": [16, 32],
        "stride": [12, 20],
        "scales": [0.75, 1.25],
        "flip": True,
    },
    "logits": {"scales": [0.5, 1.0], "flip": True, "average": "logits"},
}


@pytest.mark.parametrize("options", EVALUATORS.values(), ids=EVALUATORS.keys())
def test_every_mode_gives_the_predictable_metrics(options: dict) -> None:
    ev = Evaluator(num_workers=0, **options)
    metrics = ev.evaluate(PixelLinear(), StripeDataset(), "cpu", progress=False)
    want = expected_metrics()
    # sanity: the hand-built errors are visible in the expected numbers
    assert want["per_class"]["c"]["Acc"] < 1 and want["aAcc"] < 1
    for key in ("mIoU", "mAcc", "aAcc", "fwIoU", "per_class"):
        assert metrics[key] == want[key], key
    assert metrics["mode"] == ev.mode and metrics["flip"] == ev.flip
    assert metrics["scales"] == ev.scales and metrics["num_images"] == 2


def test_save_predictions_trainid_and_color(tmp_path: Path) -> None:
    for fmt in ("trainid", "color"):
        ev = Evaluator(num_workers=0, save_predictions=fmt)
        ev.evaluate(PixelLinear(), StripeDataset(), "cpu", False, tmp_path / fmt)
    for i in range(2):
        index = np.asarray(Image.open(tmp_path / "trainid" / f"s{i}.png"))
        assert index.shape == (64, 128) and np.array_equal(index, stripe_labels(64, 128))
        colour = Image.open(tmp_path / "color" / "masks" / f"s{i}.png")
        assert colour.mode == "P" and np.array_equal(np.asarray(colour), index)
        assert colour.getpalette()[3:6] == [255, 0, 0]
        overlay = Image.open(tmp_path / "color" / "overlays" / f"s{i}.png")
        assert overlay.size == (3 * 128, 64)  # image | truth | prediction overlay
    # without a prediction directory (validation during training) nothing is written
    Evaluator(num_workers=0, save_predictions="trainid").evaluate(
        PixelLinear(), StripeDataset(), "cpu", False
    )
