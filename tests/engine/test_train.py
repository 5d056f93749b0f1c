"""Training and evaluation end to end on the tiny synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ann.commands.eval import evaluate
from ann.commands.train import train
from helpers import TEST_CONFIGS, compose_cfg, tiny_train_overrides


@pytest.fixture
def trained_run(trained_demo: Path) -> Path:
    return trained_demo


def test_run_directory_contents(trained_run: Path) -> None:
    for name in ("config.yaml", "train.log", "metrics.json"):
        assert (trained_run / name).is_file(), name
    assert (trained_run / "checkpoints/last.pth").is_file()
    assert (trained_run / "checkpoints/best.pth").is_file()
    assert list((trained_run / "tb").glob("events.out.tfevents.*"))
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics) >= {
        "mIoU",
        "mAcc",
        "aAcc",
        "per_class",
        "num_images",
        "scales",
        "flip",
        "mode",
        "iteration",
    }
    assert metrics["iteration"] == 6 and metrics["num_images"] == 6
    assert set(metrics["per_class"]) == {"background", "red", "green", "blue", "yellow"}
    ckpt = torch.load(trained_run / "checkpoints/last.pth", weights_only=True)
    assert set(ckpt) >= {
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "iteration",
        "best_mIoU",
        "config",
        "rng",
    }
    assert ckpt["iteration"] == 6


def test_eval_reproduces_training_metrics(
    trained_run: Path, shapes_root: Path, tmp_path: Path
) -> None:
    best = torch.load(trained_run / "checkpoints/best.pth", weights_only=True)
    cfg = compose_cfg(
        [
            "experiment=demo",
            f"dataset.root={shapes_root}",
            f"checkpoint={trained_run / 'checkpoints/best.pth'}",
            f"output_dir={tmp_path}",
        ],
        "eval",
    )
    metrics = evaluate(cfg)
    assert metrics["mIoU"] == pytest.approx(best["best_mIoU"], abs=1e-9)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["mIoU"] == pytest.approx(metrics["mIoU"])
    assert (tmp_path / "eval.log").is_file() and (tmp_path / "metrics.csv").is_file()


def test_training_lowers_the_loss(shapes_root: Path, tmp_path: Path) -> None:
    """30 steps on the 16 training images must lower the loss clearly."""
    cfg = compose_cfg(
        tiny_train_overrides(
            shapes_root,
            tmp_path,
            "trainer.max_iters=30",
            "trainer.val_interval=1000",
            "trainer.batch_size=4",
            "dataset.train.transforms.ratio_range=[1.0,1.0]",
            "dataset.train.transforms.photometric=false",
            "model.decode_head.block_dropout=0",
            "model.decode_head.dropout=0",
            "optimizer.lr=0.01",
        )
    )
    train(cfg)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def _tb_losses(run_dir: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [e.value for e in events.Scalars("train/loss")]


def test_gradient_accumulation_matches_the_larger_batch(shapes_root: Path, tmp_path: Path) -> None:

    common = [TEST_CONFIGS, "model=tiny_gn", "trainer.max_iters=4", "trainer.val_interval=100"]
    common.append(
        "dataset.train.transforms.ratio_range=[1.0,1.0]"
    )  # no padding: equal pixel counts
    train(
        compose_cfg(
            tiny_train_overrides(shapes_root, tmp_path / "a", *common, "trainer.batch_size=4")
        )
    )
    train(
        compose_cfg(
            tiny_train_overrides(
                shapes_root, tmp_path / "b", *common, "trainer.batch_size=2", "trainer.accumulate=2"
            )
        )
    )
    assert _tb_losses(tmp_path / "a") == pytest.approx(_tb_losses(tmp_path / "b"), abs=1e-5)


def test_bf16_channels_last_trains_and_validates_on_cpu(shapes_root: Path, tmp_path: Path) -> None:
    fast = ("trainer.amp=true", "trainer.channels_last=true", "evaluator.channels_last=true")
    overrides = tiny_train_overrides(shapes_root, tmp_path, "trainer.max_iters=2", *fast)
    metrics = train(compose_cfg([*overrides, "evaluator.amp=true"]))
    losses = _tb_losses(tmp_path)
    assert len(losses) == 2 and all(0 < v < 10 for v in losses)
    assert 0 <= metrics["mIoU"] <= 1
