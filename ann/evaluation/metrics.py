"""Confusion-matrix segmentation metrics: mIoU, mAcc, aAcc, fwIoU, per class."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def confusion_matrix(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255
) -> Tensor:
    """Counts (target, prediction) pairs over non-ignored pixels.

    Args:
        pred: (...) int predictions in [0, K).
        target: (...) int labels in [0, K) or ``ignore_index``, same shape
            (non-negative; labels >= K are left out like ``ignore_index``).

    Returns:
        (K, K) int64 matrix on ``pred``'s device, rows = ground truth
        (``torch.bincount`` on an accelerator, numpy's on the CPU).
    """
    k2 = num_classes * num_classes
    # target·K + pred in one pass. No boolean indexing (a gather that costs
    # more than everything else on a CPU): a label >= K, the usual ignore index
    # 255 among them, lands in a bin >= K·K that is cut off below.
    index = torch.add(pred.long(), target.long(), alpha=num_classes).reshape(-1)
    if ignore_index < num_classes:
        index = torch.where(target.reshape(-1) != ignore_index, index, k2)
    if index.device.type == "cpu":
        # numpy's bincount is about twice as fast as torch's on a CPU
        counts = torch.from_numpy(np.bincount(index.numpy(), minlength=k2))
    else:
        counts = torch.bincount(index, minlength=k2)
    return counts[:k2].reshape(num_classes, num_classes)


def _nan_to_none(values: Tensor) -> list[float | None]:
    return [None if v != v else float(v) for v in values.tolist()]


def compute_metrics(conf: Tensor, class_names: Sequence[str]) -> dict:
    """Metrics from a (K, K) confusion matrix (rows ground truth).

    A class absent from both ground truth and prediction has IoU None and is
    left out of mIoU; a class absent from the ground truth has Acc None and
    is left out of mAcc. Returns fractions in [0, 1]::

        {"mIoU", "mAcc", "aAcc", "fwIoU", "per_class": {name: {"IoU", "Acc"}}}
    """
    conf = conf.double().cpu()
    tp = conf.diag()
    gt = conf.sum(1)
    pred = conf.sum(0)
    union = gt + pred - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    total = conf.sum()
    freq = gt / total.clamp(min=1)
    present = ~iou.isnan()
    return {
        "mIoU": float(iou[present].mean()) if present.any() else 0.0,
        "mAcc": float(acc[~acc.isnan()].mean()) if (~acc.isnan()).any() else 0.0,
        "aAcc": float(tp.sum() / total) if total > 0 else 0.0,
        "fwIoU": float((freq[present] * iou[present]).sum()),
        "per_class": {
            name: {"IoU": i, "Acc": a}
            for name, i, a in zip(class_names, _nan_to_none(iou), _nan_to_none(acc), strict=True)
        },
    }


def format_table(metrics: dict) -> str:
    """An aligned per-class table (percentages) followed by the summary line."""
    names = list(metrics["per_class"])
    width = max([len("class"), *map(len, names)])

    def pct(v: float | None) -> str:
        return "    -" if v is None else f"{100 * v:5.2f}"

    lines = [f"{'class':<{width}} |   IoU |   Acc", f"{'-' * width}-+-------+------"]
    for name in names:
        row = metrics["per_class"][name]
        lines.append(f"{name:<{width}} | {pct(row['IoU'])} | {pct(row['Acc'])}")
    lines.append(
        f"mIoU {pct(metrics['mIoU'])}  mAcc {pct(metrics['mAcc'])}  aAcc {pct(metrics['aAcc'])}"
    )
    return "\n".join(lines)
