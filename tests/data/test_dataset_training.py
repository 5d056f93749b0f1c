"""End to end on tiny trees: the reference experiments' data paths train."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, compose_cfg
from trees import make_cityscapes

ACCEPTANCE = [
    "experiment=cityscapes_ann",
    "model=ann_r18",
    "trainer.max_iters=2",
    "trainer.batch_size=2",
    "trainer.num_workers=0",
    "dataset.crop_size=[32,64]",
    "dataset.scale=[128,64]",
    "evaluator.num_workers=0",
    "trainer.num_vis=1",
]


def _check_run(out: Path) -> None:
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["iteration"] == 2 and len(metrics["per_class"]) == 19
    assert (out / "checkpoints" / "last.pth").is_file()


def test_cityscapes_ann_trains_on_tiny_tree(tmp_path: Path) -> None:
    """The issue's acceptance command (in process), scales shrunk to the tiny images."""
    from ann.commands.train import train

    root = make_cityscapes(tmp_path / "cs", {"train": {"aachen": 2}, "val": {"ulm": 1}}, (64, 128))
    out = tmp_path / "run"
    train(compose_cfg([*ACCEPTANCE, f"dataset.root={root}", f"output_dir={out}"]))
    _check_run(out)


@pytest.mark.slow
def test_train_tool_cityscapes_ann_on_tiny_tree(tmp_path: Path) -> None:
    """The same through tools/train.py in a subprocess."""
    root = make_cityscapes(tmp_path / "cs", {"train": {"aachen": 2}, "val": {"ulm": 1}}, (64, 128))
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools/train.py"),
            *ACCEPTANCE,
            f"dataset.root={root}",
            f"output_dir={out}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_run(out)


def test_custom_example_experiment_trains(tmp_path: Path) -> None:
    """The documented 2-class custom dataset: images/{split}/*.jpg + masks/{split}/*.png."""
    from ann.commands.train import train

    rng = np.random.default_rng(0)
    root = tmp_path / "mine"
    for split, count in (("train", 4), ("val", 2)):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in range(count):
            mask = np.zeros((40, 56), np.uint8)
            mask[8 : 20 + i, 10:30] = 1
            mask[0] = 255  # an ignored row
            image = np.where(mask[..., None] == 1, 200, 40).astype(np.uint8).repeat(3, 2)
            Image.fromarray(image + rng.integers(0, 20, image.shape, dtype=np.uint8)).save(
                root / "images" / split / f"im{i}.jpg"
            )
            Image.fromarray(mask, mode="L").save(root / "masks" / split / f"im{i}.png")
    cfg = compose_cfg(
        [
            "experiment=custom_example_ann",
            f"dataset.root={root}",
            "model=ann_r18",
            "model.backbone.pretrained=null",
            "dataset.crop_size=[32,32]",
            "trainer.max_iters=2",
            "trainer.batch_size=2",
            "trainer.num_workers=0",
            "evaluator.num_workers=0",
            "trainer.num_vis=1",
            "scheduler.warmup_iters=0",
            f"output_dir={tmp_path / 'run'}",
        ]
    )
    metrics = train(cfg)
    assert set(metrics["per_class"]) == {"background", "object"}
    assert metrics["num_images"] == 2
