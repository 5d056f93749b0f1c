"""docs/contributing.md's recipes, done as a user would: a head, a backbone
and a dataset in their own modules outside ann/ (tests/extension/*.py) with
their configs on Hydra's search path (tests/extension/configs/), selected on
the command line; 2 training iterations and an evaluation of the result."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from helpers import ROOT, run_bounded, tool_env

EXTENSION = ROOT / "tests" / "extension"
COMMON = [
    f"hydra.searchpath=[file://{EXTENSION / 'configs'}]",
    "model=ann_r18",
    "model/backbone=toy",
    "model/decode_head=toy",
    "dataset=toy",
    "evaluator.num_workers=0",
]


def _tool(script: str, overrides: list[str]):
    env = tool_env()
    env["PYTHONPATH"] = os.pathsep.join([str(EXTENSION), env["PYTHONPATH"]])
    return run_bounded([sys.executable, str(ROOT / "tools" / script), *overrides], 300, env)


def test_a_head_backbone_and_dataset_from_outside_the_package(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train = _tool(
        "train.py",
        [
            *COMMON,
            f"output_dir={out}",
            "trainer.max_iters=2",
            "trainer.val_interval=2",
            "trainer.ckpt_interval=2",
            "trainer.log_interval=1",
            "trainer.batch_size=2",
            "trainer.num_workers=0",
            "trainer.amp=false",
        ],
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "training ToyHead for 2 iterations" in train.stderr
    evaluated = _tool(
        "eval.py",
        [
            *COMMON,
            f"checkpoint={out / 'checkpoints' / 'last.pth'}",
            f"output_dir={tmp_path / 'eval'}",
        ],
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert sorted(metrics["per_class"]) == ["light", "shade"]
    assert metrics["num_images"] == 4 and 0 <= metrics["mIoU"] <= 1
    config = (out / "config.yaml").read_text()
    assert "toy_backbone.ToyBackbone" in config and "in_channels: 64" in config
