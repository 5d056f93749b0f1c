"""tools/eval.py refuses bad checkpoints and keys with one clear line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from faulty import RunsCode
from hydra.utils import instantiate

from ann.commands.eval import evaluate
from ann.errors import CheckpointError, ConfigError
from helpers import ROOT, checkpoint_overrides, compose_cfg

# case -> (what the one line must say)
CASES = {
    "missing": "no file at",
    "not_a_checkpoint": "not a readable weights file",
    "untrusted": "holds Python objects besides tensors",
    "no_model_key": "expected a dict with a 'model'",
    "other_classes": "shape mismatch",
    "other_architecture": "missing key",
}


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpts")
    (d / "not_a_checkpoint.pth").write_text("hello, I am a text file\n")
    torch.save({"weights": {}}, d / "no_model_key.pth")
    torch.save({"model": {}, "hook": RunsCode(d / "ran")}, d / "untrusted.pth")
    # the small model trained for 3 classes instead of the shapes' 5
    other = instantiate(compose_cfg(["experiment=demo", "dataset.num_classes=3"]).model)
    torch.save({"model": other.state_dict(), "iteration": 1}, d / "other_classes.pth")
    # the small model without its auxiliary head: keys the configured model has are missing
    arch = instantiate(compose_cfg(["experiment=demo", "model.aux_head=null"]).model)
    torch.save({"model": arch.state_dict(), "iteration": 1}, d / "other_architecture.pth")
    return {case: d / f"{case}.pth" for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_bad_checkpoint_is_a_checkpoint_error(
    case: str, bad_checkpoints: dict, shapes_root: Path, tmp_path: Path
) -> None:
    cfg = compose_cfg(checkpoint_overrides(shapes_root, bad_checkpoints[case], tmp_path), "eval")
    with pytest.raises(CheckpointError, match=CASES[case]) as info:
        evaluate(cfg)
    assert "\n" not in str(info.value) and str(bad_checkpoints[case]) in str(info.value)
    assert "weights_only" not in str(info.value)  # never advise turning the check off
    assert not (tmp_path / "metrics.json").exists()


def test_bad_evaluator_key_is_a_config_error(shapes_root: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"model": {}}, ckpt)
    cfg = compose_cfg(
        checkpoint_overrides(shapes_root, ckpt, tmp_path, "evaluator.mode=slide"), "eval"
    )
    with pytest.raises(ConfigError, match="evaluator.crop_size"):  # checked before loading
        evaluate(cfg)


def run_tool(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "eval.py"), *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )


def assert_one_line_exit_2(proc: subprocess.CompletedProcess, expected: str) -> None:
    """Exit 2 and one ``error:`` line, the last one: the run's log lines before
    it (the model describing its heads) may stay, a traceback may not."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:], proc.stderr
    assert expected in errors[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_tool_missing_checkpoint(shapes_root: Path, tmp_path: Path) -> None:
    proc = run_tool(*checkpoint_overrides(shapes_root, tmp_path / "nope.pth", tmp_path))
    assert_one_line_exit_2(proc, f"no file at {tmp_path / 'nope.pth'}")


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c != "missing"])
def test_tool_bad_checkpoint(
    case: str, bad_checkpoints: dict, shapes_root: Path, tmp_path: Path
) -> None:
    proc = run_tool(*checkpoint_overrides(shapes_root, bad_checkpoints[case], tmp_path))
    assert_one_line_exit_2(proc, CASES[case])


@pytest.mark.slow
def test_tool_bad_evaluator_key(shapes_root: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"model": {}}, ckpt)
    proc = run_tool(*checkpoint_overrides(shapes_root, ckpt, tmp_path, "evaluator.mode=tiles"))
    assert_one_line_exit_2(proc, "evaluator.mode='tiles': expected one of whole, slide")
