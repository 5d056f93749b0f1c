"""``evaluate(cfg)``: a checkpoint on a dataset split, as tools/eval.py runs it."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from ann import dist
from ann.config.record import write_config
from ann.config.schema import check_config
from ann.errors import ConfigError
from ann.evaluation.evaluator import write_metrics
from ann.evaluation.metrics import format_table
from ann.hub.loading import load_model, open_checkpoint, with_checkpoint_config
from ann.logging_utils import setup_logging
from ann.visualization.figures import write_eval_plots

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig, overrides: Sequence[str] | None = None) -> dict:
    """Loads ``cfg.checkpoint`` into ``cfg.model`` and evaluates ``cfg.split``
    of the dataset; writes eval.log, metrics.json, metrics.csv,
    confusion_matrix.png and per_class_iou.png to ``cfg.output_dir`` (the two
    figures also to TensorBoard under ``tb/``) and returns the metrics.
    ``overrides``: the command line that composed ``cfg`` (tools/eval.py);
    without ``experiment=`` in it the checkpoint's own config rebuilds the
    model (:func:`ann.hub.loading.with_checkpoint_config`)."""
    # Cheap checks first: a bad key or checkpoint fails in seconds. The
    # checkpoint's own config fills in the model when no experiment is named.
    check_config(cfg, ("model", "evaluator", "dataset"))
    path, state = open_checkpoint(cfg.checkpoint)
    cfg = with_checkpoint_config(cfg, state, path, overrides)
    check_config(cfg, ("model", "evaluator", "dataset"))
    device = dist.init_distributed(float(cfg.trainer.get("dist_timeout_min", 30)))
    try:
        with dist.rank_failures("trainer.dist_timeout_min"):
            return _evaluate(cfg, device, path, state)
    finally:
        dist.cleanup()


def _evaluate(cfg: DictConfig, device: torch.device, path: Path, state: dict) -> dict:
    """The body of :func:`evaluate`, inside the process group."""
    out_dir = Path(dist.broadcast_object(str(cfg.output_dir)))
    write_config(cfg, out_dir)  # checked before the process group started
    setup_logging(out_dir / "eval.log", dist.is_main())
    if cfg.split not in cfg.dataset:
        raise ConfigError(
            f"split={cfg.split}: dataset '{cfg.dataset.name}' has no such split "
            f"(expected one of {[k for k in cfg.dataset if k in ('train', 'val', 'test')]})"
        )
    evaluator = instantiate(cfg.evaluator)
    dataset = instantiate(cfg.dataset[cfg.split])
    model = load_model(cfg.model, state, path, device)
    pred_dir = out_dir / "predictions"
    metrics = evaluator.evaluate(model, dataset, device, prediction_dir=pred_dir)
    metrics["iteration"] = int(state.get("iteration", 0))
    if dist.is_main():
        log.info(
            "%s on %s/%s:\n%s",
            cfg.checkpoint,
            cfg.dataset.name,
            cfg.split,
            format_table(metrics),
        )
        write_metrics(metrics, out_dir / "metrics.json")
        write_metrics_csv(metrics, out_dir / "metrics.csv")
        log.info("wrote %s", out_dir / "metrics.json")
        with SummaryWriter(str(out_dir / "tb")) as writer:
            figures = write_eval_plots(
                evaluator.last_confusion,
                metrics,
                out_dir,
                f"{cfg.dataset.name}/{cfg.split}",
                writer=writer,
                step=metrics["iteration"],
            )
        log.info("wrote %s (also in TensorBoard: %s)", ", ".join(map(str, figures)), out_dir / "tb")
        if evaluator.save_predictions:
            log.info("wrote %s predictions under %s", evaluator.save_predictions, pred_dir)
        if evaluator.save_predictions == "cityscapes":
            log.info("to submit: (cd %s && zip -qr ../submission.zip .)", pred_dir)
    return metrics


def write_metrics_csv(metrics: dict, path: Path) -> None:
    """One row per class (IoU, Acc) and a final mean row, as fractions."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "IoU", "Acc"])
        for name, row in metrics["per_class"].items():
            writer.writerow([name, row["IoU"], row["Acc"]])
        writer.writerow(["mean", metrics["mIoU"], metrics["mAcc"]])
