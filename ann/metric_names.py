"""The names a training run records its numbers under: TensorBoard tags, the
keys of a validation's metrics, and the files in the run folder. The trainer
writes them and the summaries and plots read them, so each is spelled here
once."""

from __future__ import annotations

# The headline metrics of a validation (fractions in [0, 1]; metrics.json).
HEADLINE = ("mIoU", "mAcc", "aAcc")

# TensorBoard tags.
VAL = "val/"  # + a headline metric
VAL_MIOU = VAL + "mIoU"
VAL_CLASS_IOU = "val_IoU/"  # + a class name
VAL_PREDICTIONS = "val/predictions"  # image grid: input | ground truth | prediction
TRAIN = "train/"  # + a loss term (loss, loss_main, loss_aux)
TRAIN_LOSS = TRAIN + "loss"
TRAIN_LR = TRAIN + "lr"
TIME_ITER = "time/iter"
TIME_DATA = "time/data"
MEMORY = "memory/max_MiB"

# Files in a run folder.
METRICS_FILE = "metrics.json"  # the last validation or evaluation
METRICS_LOG = "metrics.jsonl"  # one line per validation of a training run


def val_tag(key: str) -> str:
    """The TensorBoard tag of a headline metric, e.g. ``val/mIoU``."""
    return VAL + key


__all__ = [
    "HEADLINE",
    "MEMORY",
    "METRICS_FILE",
    "METRICS_LOG",
    "TIME_DATA",
    "TIME_ITER",
    "TRAIN",
    "TRAIN_LOSS",
    "TRAIN_LR",
    "VAL_CLASS_IOU",
    "VAL_MIOU",
    "VAL_PREDICTIONS",
    "val_tag",
]
