"""Plots: eval's confusion matrix and per-class IoU, tools/plot.py's curves,
tools/browse_dataset.py's samples. Each test checks the data that was drawn
(captured from the figure as it is saved), not only that a PNG exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from ann.commands import plot as curves
from ann.commands.browse_dataset import browse
from ann.commands.eval import evaluate
from ann.commands.train import train
from ann.errors import ConfigError
from ann.evaluation.evaluator import Evaluator
from ann.evaluation.metrics import compute_metrics
from ann.visualization import figures as plots
from helpers import ROOT, TEST_CONFIGS, checkpoint_overrides, compose_cfg, tiny_train_overrides

# The test-only tiny model: a run of 4 iterations takes about a second.
TINY = (TEST_CONFIGS, "model=tiny_gn")


@pytest.fixture(scope="module")
def runs(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny training runs (4 iterations, loss and lr logged each, validation
    at 2 and 4) that differ in their learning rate."""
    out = tmp_path_factory.mktemp("runs")
    dirs = {}
    for name, lr in (("run_a", "0.02"), ("run_b", "0.05")):
        dirs[name] = out / name
        train(
            compose_cfg(tiny_train_overrides(shapes_root, dirs[name], f"optimizer.lr={lr}", *TINY))
        )
    return dirs


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, object]]:
    """Records (path, figure) of every figure saved, just before it is written."""
    records: list[tuple[Path, object]] = []
    original = plots.save_figure

    def spy(fig: object, path: str | Path) -> Path:
        records.append((Path(path), snapshot(fig)))
        return original(fig, path)

    # curves and browse import save_figure by name; plots calls its own global.
    for module in ("ann.visualization.figures", "ann.commands.plot", "ann.commands.browse_dataset"):
        monkeypatch.setattr(f"{module}.save_figure", spy)
    return records


def snapshot(fig: object) -> list[dict]:
    """What each axes of ``fig`` draws: title, image data, bar widths, lines, tick labels."""
    return [
        {
            "title": ax.get_title(),
            "images": [np.ma.filled(im.get_array().astype(float), np.nan) for im in ax.images],
            "bars": np.array([p.get_width() for p in ax.patches]),
            "lines": {
                line.get_label(): (np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
                for line in ax.get_lines()
                if not line.get_label().startswith("_")
            },
            "yticklabels": [t.get_text() for t in ax.get_yticklabels()],
            "texts": [t.get_text() for t in ax.texts],
        }
        for ax in fig.axes
    ]


def test_row_normalize() -> None:
    conf = torch.tensor([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    matrix = plots.row_normalize(conf)
    np.testing.assert_allclose(matrix[0], [0.75, 0.25, 0.0])
    np.testing.assert_allclose(matrix[2], [0.25, 0.25, 0.5])
    assert np.isnan(matrix[1]).all()  # no ground truth: no row to normalise


def test_eval_plots_draw_the_evaluators_matrix_and_metrics(
    runs: dict[str, Path], shapes_root: Path, tmp_path: Path, monkeypatch, saved
) -> None:
    evaluators: list[Evaluator] = []
    original = Evaluator.evaluate

    def keep(self: Evaluator, *args: object, **kwargs: object) -> dict:
        evaluators.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "evaluate", keep)
    ckpt = runs["run_a"] / "checkpoints" / "last.pth"
    evaluate(compose_cfg(checkpoint_overrides(shapes_root, ckpt, tmp_path, *TINY), "eval"))

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # metrics.json keeps its contract: no matrix in it
    assert set(metrics) == {
        "mIoU",
        "mAcc",
        "aAcc",
        "fwIoU",
        "per_class",
        "num_images",
        "scales",
        "flip",
        "mode",
        "iteration",
    }
    conf = evaluators[0].last_confusion
    assert conf.shape == (5, 5) and int(conf.sum()) == 6 * 64 * 64
    assert compute_metrics(conf, list(metrics["per_class"]))["per_class"] == metrics["per_class"]

    figures = dict(saved)
    drawn = figures[tmp_path / "confusion_matrix.png"][0]
    counts = conf.double().numpy()
    with np.errstate(invalid="ignore"):  # a class absent from the ground truth: a NaN row
        np.testing.assert_allclose(drawn["images"][0], counts / counts.sum(1, keepdims=True))
    assert drawn["yticklabels"] == list(metrics["per_class"])
    assert "shapes/val" in drawn["title"] and f"{100 * metrics['mIoU']:.2f}%" in drawn["title"]
    bars = figures[tmp_path / "per_class_iou.png"][0]["bars"]
    expected = [np.nan if r["IoU"] is None else r["IoU"] for r in metrics["per_class"].values()]
    np.testing.assert_allclose(bars, expected)

    for name in ("confusion_matrix.png", "per_class_iou.png"):
        with Image.open(tmp_path / name) as png:
            assert png.format == "PNG" and min(png.size) > 300
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert sorted(acc.Tags()["images"]) == ["eval/confusion_matrix", "eval/per_class_iou"]
    assert acc.Images("eval/confusion_matrix")[0].step == metrics["iteration"] == 4


def test_per_class_iou_marks_absent_classes_and_scales_to_150() -> None:
    names = [f"class {i}" for i in range(150)]
    conf = torch.eye(150, dtype=torch.int64) * 10
    conf[3, 3] = 0  # class 3: neither in the ground truth nor predicted
    conf[5, 6] = 10  # class 5: half of it predicted as class 6
    metrics = compute_metrics(conf, names)
    fig = plots.per_class_iou_figure(metrics["per_class"], metrics["mIoU"], "ade-like/val")
    drawn = snapshot(fig)[0]
    assert np.isnan(drawn["bars"][3]) and drawn["bars"][5] == pytest.approx(0.5)
    assert drawn["yticklabels"] == names
    assert any(t.startswith("absent") for t in drawn["texts"])
    matrix = snapshot(plots.confusion_figure(conf, names, "ade-like/val"))[0]["images"][0]
    assert matrix.shape == (150, 150) and np.isnan(matrix[3]).all()
    assert matrix[5, 5] == matrix[5, 6] == pytest.approx(0.5)
    small = plots.confusion_figure(conf[:19, :19], names[:19], "city-like/val")
    big = plots.confusion_figure(conf, names, "ade-like/val")
    assert big.get_size_inches()[0] > 2.5 * small.get_size_inches()[0]  # room for 150 names


def test_plot_tool_overlays_runs(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, saved
) -> None:
    out = tmp_path / "curves.png"
    assert curves.main([str(runs["run_a"]), str(runs["run_b"]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as png:
        assert png.format == "PNG"
    ((path, axes),) = saved
    assert path == out
    assert [ax["title"] for ax in axes] == ["train/loss", "train/loss_main", "train/lr", "val/mIoU"]
    for ax in axes:
        assert sorted(ax["lines"]) == ["run_a", "run_b"]  # one line per run
        steps = [2, 4] if ax["title"] == "val/mIoU" else [1, 2, 3, 4]
        for x, _ in ax["lines"].values():
            assert x.tolist() == steps
    for name, run in runs.items():  # the last validation is the run's metrics.json
        miou = json.loads((run / "metrics.json").read_text())["mIoU"]
        assert axes[3]["lines"][name][1][-1] == pytest.approx(miou)
    assert not np.allclose(axes[2]["lines"]["run_a"][1], axes[2]["lines"]["run_b"][1])


def test_plot_tool_keys_pick_subplots(runs: dict[str, Path], tmp_path: Path, saved) -> None:
    out = tmp_path / "iou.png"
    assert curves.main([str(runs["run_a"]), "--out", str(out), "--keys", "val_IoU/*"]) == 0
    axes = saved[0][1]
    assert [ax["title"] for ax in axes] == [
        f"val_IoU/{c}" for c in sorted(["background", "red", "green", "blue", "yellow"])
    ]


@pytest.mark.parametrize("case", ["missing", "no_events", "no_scalars", "bad_key"])
def test_plot_tool_bad_input_is_one_line(case: str, runs: dict[str, Path], tmp_path: Path) -> None:
    if case == "no_scalars":  # e.g. an eval folder: its tb/ holds only the figures
        with SummaryWriter(str(tmp_path / "eval" / "tb")) as writer:
            writer.add_image("eval/x", np.zeros((4, 4, 3), np.uint8), 0, dataformats="HWC")
    args, expected = {
        "missing": ([str(tmp_path / "nope")], f"{tmp_path / 'nope'} does not exist"),
        "no_events": ([str(tmp_path)], "no TensorBoard event files"),
        "no_scalars": ([str(runs["run_a"]), str(tmp_path / "eval")], "(no scalars)"),
        "bad_key": ([str(runs["run_a"]), "--keys", "val/nope"], "--keys val/nope: no such"),
    }[case]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "plot.py"), *args, "--out", str(tmp_path / "p.png")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not (tmp_path / "p.png").exists()


def test_browse_writes_train_and_val_samples(shapes_root: Path, tmp_path: Path, saved) -> None:
    cfg = compose_cfg(
        [
            "experiment=demo",
            f"dataset.root={shapes_root}",
            "dataset.num_train=16",
            "dataset.num_val=6",
            "dataset.train.transforms.crop_size=[48,40]",
            "browse.num=3",
            f"browse.out={tmp_path}",
        ],
        "browse",
    )
    paths = browse(cfg)
    assert [p.name for p in paths] == [
        "train_000.png",
        "val_000.png",
        "train_001.png",
        "val_001.png",
        "train_002.png",
        "val_002.png",
        "overview.png",
    ]
    for path in paths[:-1]:
        with Image.open(path) as png:
            # image | overlay: training crops are 48×40, evaluation keeps 64×64
            expected = (80, 48) if path.name.startswith("train") else (128, 64)
            assert png.size == expected, path
    ((path, axes),) = saved
    assert path.name == "overview.png" and len(axes) == 6  # 3 samples × 2 pipelines


def test_browse_val_pipeline_shows_the_original_image(shapes_root: Path, tmp_path: Path) -> None:
    """The eval pipeline only normalises: un-normalised, it gives back the file's pixels."""
    overrides = [f"dataset.root={shapes_root}", "dataset.num_train=16", "dataset.num_val=6"]
    cfg = compose_cfg(
        [
            "experiment=demo",
            *overrides,
            "browse.num=6",
            "browse.split=val",
            f"browse.out={tmp_path}",
        ],
        "browse",
    )
    browse(cfg)
    from hydra.utils import instantiate

    dataset = instantiate(cfg.dataset.val)
    for i in range(6):  # num = the split's size: every image, in order
        image, _ = dataset.load(i)
        panel = np.asarray(Image.open(tmp_path / f"val_{i:03d}.png"))
        np.testing.assert_array_equal(panel[:, :64], image)


@pytest.mark.parametrize(
    ("override", "expected"),
    [("browse.split=test", "browse.split='test'"), ("browse.num=0", "browse.num=0")],
)
def test_browse_bad_key_is_a_config_error(
    override: str, expected: str, shapes_root: Path, tmp_path: Path
) -> None:
    cfg = compose_cfg(
        [
            "experiment=demo",
            f"dataset.root={shapes_root}",
            "dataset.num_train=16",
            "dataset.num_val=6",
            override,
            f"browse.out={tmp_path}",
        ],
        "browse",
    )
    with pytest.raises(ConfigError, match=expected):
        browse(cfg)
