"""Metrics: hand-computed values and torchmetrics as an independent check."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from ann.evaluation.metrics import compute_metrics, confusion_matrix, format_table


def test_known_confusion_matrix() -> None:
    conf = torch.tensor([[3, 1, 0], [0, 2, 2], [0, 0, 0]])
    m = compute_metrics(conf, ["a", "b", "c"])
    assert m["per_class"]["a"]["IoU"] == pytest.approx(3 / 4)
    assert m["per_class"]["b"]["IoU"] == pytest.approx(2 / 5)
    # "c" never occurs in the ground truth but is predicted twice: IoU 0, Acc undefined.
    assert m["per_class"]["c"]["IoU"] == 0.0
    assert m["per_class"]["c"]["Acc"] is None
    assert m["mIoU"] == pytest.approx((3 / 4 + 2 / 5 + 0) / 3)
    assert m["mAcc"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert m["aAcc"] == pytest.approx(5 / 8)
    assert m["fwIoU"] == pytest.approx(0.5 * 3 / 4 + 0.5 * 2 / 5)


def test_absent_class_is_null_and_left_out() -> None:
    conf = torch.tensor([[4, 0, 0], [1, 5, 0], [0, 0, 0]])
    m = compute_metrics(conf, ["a", "b", "c"])
    assert m["per_class"]["c"] == {"IoU": None, "Acc": None}
    assert m["mIoU"] == pytest.approx((4 / 5 + 5 / 6) / 2)
    assert "    -" in format_table(m)


def test_agrees_with_torchmetrics_on_random_data() -> None:
    g = torch.Generator().manual_seed(0)
    k = 7
    target = torch.randint(0, k - 1, (4, 40, 50), generator=g)  # class 6 absent from truth
    pred = torch.randint(0, k - 2, (4, 40, 50), generator=g)  # classes 5, 6 never predicted
    target[torch.rand(target.shape, generator=g) < 0.2] = 255
    m = compute_metrics(confusion_matrix(pred, target, k), [str(i) for i in range(k)])
    assert m["per_class"]["6"]["IoU"] is None
    present = [c for c in range(k) if m["per_class"][str(c)]["IoU"] is not None]
    iou = MulticlassJaccardIndex(k, average="none", ignore_index=255)(pred, target)
    for c in present:
        assert m["per_class"][str(c)]["IoU"] == pytest.approx(float(iou[c]), abs=1e-6)
    assert m["mIoU"] == pytest.approx(float(iou[present].mean()), abs=1e-6)
    acc = MulticlassAccuracy(k, average="micro", ignore_index=255)(pred, target)
    assert m["aAcc"] == pytest.approx(float(acc), abs=1e-6)
    macc = MulticlassAccuracy(k, average="none", ignore_index=255)(pred, target)
    assert m["mAcc"] == pytest.approx(float(macc[:6].mean()), abs=1e-6)


def test_confusion_matrix_any_ignore_index() -> None:
    """The ignore index may be 255 (>= K, the fast path), -1 or a class-range value."""
    g = torch.Generator().manual_seed(1)
    k = 5
    pred = torch.randint(0, k, (3, 17, 23), generator=g)
    target = torch.randint(0, k, (3, 17, 23), generator=g)
    drop = torch.rand(target.shape, generator=g) < 0.3

    def reference(valid: torch.Tensor) -> torch.Tensor:
        conf = torch.zeros(k, k, dtype=torch.int64)
        for t, p in zip(target[valid].tolist(), pred[valid].tolist(), strict=True):
            conf[t, p] += 1
        return conf

    for ignore in (255, -1, 4):
        t = torch.where(drop, ignore, target) if ignore != 4 else target
        valid = ~drop if ignore != 4 else target != 4
        conf = confusion_matrix(pred, t, k, ignore)
        assert conf.dtype == torch.int64 and conf.shape == (k, k)
        assert torch.equal(conf, reference(valid)), ignore


def test_fw_iou_and_torchmetrics_on_a_large_random_map() -> None:
    """19 classes on a 256×512 map with ignore pixels: every figure matches
    torchmetrics to 1e-6, fwIoU its definition."""
    g = torch.Generator().manual_seed(2)
    k = 19
    target = torch.randint(0, k, (256, 512), generator=g)
    pred = torch.where(
        torch.rand(target.shape, generator=g) < 0.6,
        target,
        torch.randint(0, k, (256, 512), generator=g),
    )
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    conf = confusion_matrix(pred, target, k)
    m = compute_metrics(conf, [str(i) for i in range(k)])
    iou = MulticlassJaccardIndex(k, average="none", ignore_index=255)(pred, target)
    assert m["mIoU"] == pytest.approx(float(iou.double().mean()), abs=1e-6)
    acc = MulticlassAccuracy(k, average="macro", ignore_index=255)(pred, target)
    assert m["mAcc"] == pytest.approx(float(acc), abs=1e-6)
    valid = target != 255
    freq = torch.bincount(target[valid], minlength=k).double() / valid.sum()
    assert m["fwIoU"] == pytest.approx(float((freq * iou.double()).sum()), abs=1e-6)
    assert m["aAcc"] == pytest.approx(float((pred == target)[valid].double().mean()), abs=1e-12)
