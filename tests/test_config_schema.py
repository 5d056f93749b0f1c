"""Typed config groups: a wrong type or range is one line naming the key,
the value and what is expected, before any data is read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ann.config.schema import check_config
from ann.errors import ConfigError
from conftest import CONFIG_DIR, compose_cfg
from helpers import ROOT, tool_env

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("config", ["train", "eval"])
def test_every_shipped_experiment_fits_the_schema(experiment: str, config: str) -> None:
    overrides = [f"experiment={experiment}"] + (["checkpoint=x.pth"] if config == "eval" else [])
    check_config(compose_cfg(overrides, config))


BAD = {
    "trainer.max_iters=abc": "trainer.max_iters='abc': expected an integer ≥ 1 (got str)",
    "trainer.max_iters=0": "trainer.max_iters=0: expected an integer ≥ 1 (got int)",
    "trainer.val_interval=2.5": "trainer.val_interval=2.5: expected an integer ≥ 1",
    "trainer.num_workers=-1": "trainer.num_workers=-1: expected an integer ≥ 0",
    "trainer.amp=maybe": "trainer.amp='maybe': expected true or false",
    "trainer.clip_grad=-1": "trainer.clip_grad=-1: expected null or a number > 0",
    "trainer.dist_timeout_min=0": "trainer.dist_timeout_min=0: expected a number > 0",
    "optimizer.lr=-0.01": "optimizer.lr=-0.01: expected a number > 0 (got float)",
    "optimizer.momentum=1.5": "optimizer.momentum=1.5: expected a number ≥ 0 and < 1",
    "scheduler.power=abc": "scheduler.power='abc': expected a number > 0",
    "scheduler.warmup_ratio=2": "scheduler.warmup_ratio=2: expected a number > 0 and ≤ 1",
    "evaluator.mode=slid": "evaluator.mode='slid': expected one of whole, slide",
    "evaluator.scales=[]": "evaluator.scales=[]: expected a non-empty list of numbers > 0",
    "evaluator.scales=[1.0,-1]": "evaluator.scales=[1.0, -1]: expected a non-empty list",
    "evaluator.save_predictions=png": "evaluator.save_predictions='png': expected null or one of",
    "evaluator.mode=slide": "evaluator.crop_size must be [height, width]",
    "dataset.crop_size=[512]": "dataset.crop_size=[512]: expected null or a list of two integers",
    "dataset.crop_size=[2048,2048]": "dataset.crop_size=[2048, 2048]: larger than the base scale",
    "dataset.ignore_index=300": "dataset.ignore_index=300: expected an integer ≥ 0 and ≤ 255",
    "dataset.num_classes=zero": "dataset.num_classes='zero': expected an integer ≥ 1",
}


@pytest.mark.parametrize("override", BAD)
def test_bad_value_names_key_value_and_expectation(override: str) -> None:
    cfg = compose_cfg(["experiment=cityscapes_ann", override])
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert str(info.value).startswith(BAD[override]), str(info.value)
    assert "\n" not in str(info.value)


def test_train_tool_reports_the_type_before_reading_data(tmp_path: Path) -> None:
    """The issue's example: before, a TypeError from inside PolyLR."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/train.py"), "experiment=cityscapes_ann",
         f"dataset.root={tmp_path / 'absent'}", "trainer.max_iters=abc",
         f"output_dir={tmp_path / 'out'}"],
        env=tool_env(), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: trainer.max_iters='abc': expected an integer ≥ 1 (got str)"
    ]
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_eval_tool_checks_evaluator_keys_first(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/eval.py"), "experiment=cityscapes_ann",
         f"dataset.root={tmp_path / 'absent'}", f"checkpoint={tmp_path / 'absent.pth'}",
         "evaluator.mode=slid", f"output_dir={tmp_path / 'out'}"],
        env=tool_env(), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: evaluator.mode='slid': expected one of whole, slide (got str)"
    ]
