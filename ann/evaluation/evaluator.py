"""The evaluator: inference over a dataset, confusion matrix, metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from ann import dist
from ann.data.loader import build_loader, worker_deaths
from ann.data.samplers import ShardSampler
from ann.errors import ConfigError
from ann.evaluation.fast import BACKENDS, fast_forward
from ann.evaluation.metrics import compute_metrics, confusion_matrix
from ann.evaluation.options import AMP_DTYPES, check_options
from ann.evaluation.predictions import PredictionWriter
from ann.evaluation.scores import Model, predict_scores
from ann.speed import amp_dtype as amp_dtype_of
from ann.speed import forward_fn, unwrap
from ann.visualization.masks import denormalize

log = logging.getLogger(__name__)


class Evaluator:
    """Evaluates a segmentor on a dataset, one image at a time.

    Under DDP each rank evaluates a disjoint shard (every image exactly once)
    and the confusion matrices are summed over ranks.

    Args:
        mode: ``"whole"`` or ``"slide"`` (see :mod:`ann.evaluation.scores`).
        scales, flip: test-time augmentation (1.0 and False: none).
        crop_size, stride: sliding-window geometry (h, w), mode ``"slide"``.
        save_predictions: None, or ``"trainid"``, ``"cityscapes"``, ``"color"``
            (see :class:`~ann.evaluation.predictions.PredictionWriter`); written only
            when :meth:`evaluate` is given a ``prediction_dir``.
        num_workers: data loader workers.
        average: ``"prob"`` (softmax probabilities, the reference) or
            ``"logits"``: what is averaged over scales and flips.
        amp, amp_dtype: run the forward passes under autocast to ``"bf16"`` or
            ``"fp16"`` (``amp="auto"``: only where the device runs it natively);
            the scores are averaged in fp32.
        channels_last: feed the model NHWC inputs (convolutions follow their
            input's layout, so the model's own parameters are left as they are).
        fast: the inference fast path (:mod:`ann.evaluation.fast`): an eval
            copy with BatchNorm folded, channels_last and the backend chosen
            by CPU class; logits equal eager fp32's to 1e-4 relative.
        backend: None (torch, or ``fast``'s choice), ``"torch"``,
            ``"inductor"`` (torch.compile with freezing) or ``"onnxruntime"``.

    After :meth:`evaluate`, ``last_confusion`` holds that evaluation's (K, K)
    int64 confusion matrix on the CPU (rows ground truth, summed over ranks),
    for plots: metrics.json itself never carries the matrix.
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
        average: str = "prob",
        amp: bool | str = False,
        amp_dtype: str = "bf16",
        channels_last: bool = False,
        fast: bool = False,
        backend: str | None = None,
    ) -> None:
        self.mode = str(mode)
        self.scales = [float(s) for s in scales]
        self.flip = bool(flip)
        self.crop_size = [int(v) for v in crop_size] if crop_size is not None else None
        self.stride = [int(v) for v in stride] if stride is not None else None
        self.average = str(average)
        # Checked here, so a bad key fails before training or loading anything.
        check_options(
            self.mode, self.scales, self.crop_size, self.stride, self.average, save_predictions
        )
        self.save_predictions = save_predictions
        self.num_workers = num_workers
        if amp not in (True, False, "auto") or amp_dtype not in AMP_DTYPES:
            amp_dtype_of(amp, str(amp_dtype), "evaluator")  # raises the one-line error
        self.amp, self.amp_dtype = amp, str(amp_dtype)
        self._dtypes: dict[str, torch.dtype | None] = {}
        self.channels_last = bool(channels_last)
        if backend is not None and backend not in BACKENDS:
            raise ConfigError(
                f"evaluator.backend must be null or one of {list(BACKENDS)}, got {backend!r}"
            )
        self.fast, self.backend = bool(fast), backend
        # (module, its prepared forward): a folded copy or an ONNX session is
        # made once per module, and again at each evaluate() (weights change).
        self._prepared: tuple[nn.Module, Model] | None = None
        self.last_confusion: Tensor | None = None

    def dtype(self, device: torch.device | str) -> torch.dtype | None:
        """The autocast dtype on ``device`` (None: fp32), chosen and logged once
        per device type: ``amp="auto"`` depends on the hardware."""
        kind = torch.device(device).type
        if kind not in self._dtypes:
            self._dtypes[kind] = amp_dtype_of(self.amp, self.amp_dtype, "evaluator", device)
        return self._dtypes[kind]

    def predict(self, model: nn.Module, image: Tensor, out_size: tuple[int, int]) -> Tensor:
        """Averaged scores of the configured mode/scales/flip:
        (B, 3, H, W) -> (B, K, *out_size)."""
        net = unwrap(model)
        return predict_scores(
            self.forward(net, image.device),
            image,
            out_size,
            mode=self.mode,
            align_corners=bool(getattr(net, "align_corners", False)),
            scales=self.scales,
            flip=self.flip,
            crop_size=self.crop_size,
            stride=self.stride,
            average=self.average,
        )

    def use_fast(self, fast: bool | None = None, backend: str | None = None) -> None:
        """Sets ``fast`` and ``backend`` where given (None keeps the current value)."""
        if backend is not None and backend not in BACKENDS:
            raise ConfigError(
                f"evaluator.backend must be null or one of {list(BACKENDS)}, got {backend!r}"
            )
        self.fast = self.fast if fast is None else bool(fast)
        self.backend = backend or self.backend
        self._prepared = None

    def forward(self, model: nn.Module, device: torch.device | str) -> Model:
        """``model`` as the function of (B, 3, H, W) images that :meth:`predict`
        runs, returning fp32 (B, K, H, W) logits: autocast and layout, or the
        fast path's prepared copy (made on the first call for each module)."""
        net = unwrap(model)
        if not self.fast and self.backend in (None, "torch"):
            return forward_fn(net, self.dtype(device), self.channels_last)
        if self._prepared is None or self._prepared[0] is not net:
            dtype = self.dtype(device)
            self._prepared = (net, fast_forward(net, device, self.backend, self.fast, dtype))
        return self._prepared[1]

    @torch.no_grad()
    def predict_masks(
        self,
        model: nn.Module,
        images: Sequence[Tensor],
        sizes: Sequence[tuple[int, int]],
        batch_size: int = 8,
    ) -> list[Tensor]:
        """Class ids of many images: ``images[i]`` (3, h, w) model inputs
        (moved to the model's device a batch at a time), ``sizes[i]`` the (H, W) to predict at -> (H, W)
        int64 tensors on the CPU, in order. Images of one input size and one
        output size go through :meth:`predict` ``batch_size`` at a time; the
        ids equal one-at-a-time prediction, as every layer in eval mode
        treats a batch's images apart."""
        groups: dict[tuple, list[int]] = {}
        for i, (image, size) in enumerate(zip(images, sizes, strict=True)):
            groups.setdefault((tuple(image.shape), tuple(size)), []).append(i)
        step = max(int(batch_size), 1)
        device = next(unwrap(model).parameters()).device
        masks: list[Tensor | None] = [None] * len(images)
        for (_, size), indices in groups.items():
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                batch = torch.stack([images[i] for i in chunk]).to(device)
                scores = self.predict(model, batch, size)
                for i, ids in zip(chunk, scores.argmax(1).cpu(), strict=True):
                    masks[i] = ids
        return masks  # type: ignore[return-value]

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        dataset: Dataset,
        device: torch.device | str = "cpu",
        progress: bool = True,
        prediction_dir: str | Path | None = None,
        loader_name: str = "eval",
    ) -> dict:
        """Runs the model over ``dataset``; returns the metrics.json dict
        (mIoU, mAcc, aAcc, fwIoU, per_class, num_images, scales, flip, mode).

        With ``save_predictions`` set and a ``prediction_dir``, every rank
        writes the predictions of its own shard there. ``loader_name`` ("val"
        or "eval") names the loader in the error if a worker dies.
        """
        net = unwrap(model)
        was_training = net.training
        net.eval()
        self._prepared = None  # the weights may have changed since the last evaluation
        num_classes = dataset.num_classes
        conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        sampler = ShardSampler(len(dataset), dist.get_rank(), dist.get_world_size())
        loader = build_loader(dataset, sampler=sampler, num_workers=self.num_workers)
        writer = None
        if self.save_predictions and prediction_dir is not None:
            writer = PredictionWriter(
                self.save_predictions,
                prediction_dir,
                dataset.classes,
                dataset.palette,
                dataset.ignore_index,
            )
        # disable=None: a bar only on a terminal (no carriage returns in a log file).
        show = None if progress and dist.is_main() else True
        bar = tqdm(loader, desc=loader_name, disable=show, leave=False)
        with worker_deaths(loader_name, "evaluator.num_workers"):
            for batch in bar:
                self._step(net, batch, device, conf, writer, dataset)
        dist.all_reduce_sum(conf)
        self.last_confusion = conf.cpu()
        net.train(was_training)
        metrics = compute_metrics(conf, dataset.classes)
        metrics.update(num_images=len(dataset), scales=self.scales, flip=self.flip, mode=self.mode)
        return metrics

    def _step(
        self,
        net: nn.Module,
        batch: dict,
        device: torch.device | str,
        conf: Tensor,
        writer: PredictionWriter | None,
        dataset: Dataset,
    ) -> None:
        """Predicts one batch, adds it to ``conf`` (K, K) and writes its predictions."""
        image = batch["image"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True)
        pred = self.predict(net, image, tuple(mask.shape[-2:])).argmax(1)
        conf += confusion_matrix(pred, mask, dataset.num_classes, dataset.ignore_index)
        if writer is not None:
            for i, name in enumerate(batch["name"]):
                writer.write(
                    name,
                    pred[i].cpu().numpy().astype("uint8"),
                    denormalize(batch["image"][i], getattr(dataset, "transforms", None))
                    if writer.fmt == "color"
                    else None,
                    batch["mask"][i].numpy(),
                )


def write_metrics(metrics: dict, path: str | Path) -> None:
    """Writes metrics.json (indented, stable key order)."""
    Path(path).write_text(json.dumps(metrics, indent=2) + "\n")
