"""The evaluator: inference over a dataset, confusion matrix, metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ann import dist
from ann.data.samplers import ShardSampler
from ann.engine.inference import predict_scores
from ann.metrics import compute_metrics, confusion_matrix

log = logging.getLogger(__name__)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


class Evaluator:
    """Evaluates a segmentor on a dataset, one image at a time.

    Under DDP each rank evaluates a disjoint shard (every image exactly once)
    and the confusion matrices are summed over ranks.

    Args:
        mode: ``"whole"``.
        scales, flip: test-time augmentation (1.0 and False: none).
        crop_size, stride: sliding-window geometry (mode ``"slide"``).
        save_predictions: None, or a format to write under ``predictions/``.
        num_workers: data loader workers.
    """

    def __init__(
        self,
        mode: str = "whole",
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        crop_size: Sequence[int] | None = None,
        stride: Sequence[int] | None = None,
        save_predictions: str | None = None,
        num_workers: int = 2,
    ) -> None:
        self.mode = mode
        self.scales = [float(s) for s in scales]
        self.flip = bool(flip)
        self.crop_size = crop_size
        self.stride = stride
        self.save_predictions = save_predictions
        self.num_workers = num_workers

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        dataset: Dataset,
        device: torch.device | str = "cpu",
        progress: bool = True,
    ) -> dict:
        """Runs the model over ``dataset``; returns the metrics.json dict
        (mIoU, mAcc, aAcc, fwIoU, per_class, num_images, scales, flip, mode)."""
        net = unwrap(model)
        was_training = net.training
        net.eval()
        num_classes = dataset.num_classes
        conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        sampler = ShardSampler(len(dataset), dist.get_rank(), dist.get_world_size())
        loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=self.num_workers)
        bar = tqdm(loader, desc="eval", disable=not (progress and dist.is_main()), leave=False)
        for batch in bar:
            image = batch["image"].to(device, non_blocking=True)
            mask = batch["mask"].to(device, non_blocking=True)
            scores = predict_scores(
                net, image, tuple(mask.shape[-2:]), self.mode, getattr(net, "align_corners", False)
            )
            conf += confusion_matrix(scores.argmax(1), mask, num_classes, dataset.ignore_index)
        dist.all_reduce_sum(conf)
        net.train(was_training)
        metrics = compute_metrics(conf, dataset.classes)
        metrics.update(num_images=len(dataset), scales=self.scales, flip=self.flip, mode=self.mode)
        return metrics


def write_metrics(metrics: dict, path: str | Path) -> None:
    """Writes metrics.json (indented, stable key order)."""
    Path(path).write_text(json.dumps(metrics, indent=2) + "\n")
