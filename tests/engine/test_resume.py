"""Checkpoints and exact resume, in-process and after SIGTERM to a real run."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ann.commands.train import train
from helpers import ROOT, TEST_CONFIGS, compose_cfg, run_tool, tiny_train_overrides, tool_env


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints/last.pth", weights_only=True)["model"]


def _assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_is_bitwise_exact(shapes_root: Path, tmp_path: Path) -> None:
    """A run resumed from its iteration-3 checkpoint ends with the same
    weights, bit for bit, as the uninterrupted run (data order, augmentation,
    dropout and optimizer state included)."""
    extra = ["trainer.max_iters=6", "trainer.val_interval=3", "trainer.ckpt_interval=3"]
    full = tmp_path / "full"
    train(compose_cfg(tiny_train_overrides(shapes_root, full, *extra)))
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(full / "checkpoints/iter_0000003.pth", resumed / "checkpoints/last.pth")
    train(compose_cfg(tiny_train_overrides(shapes_root, resumed, *extra)))
    assert torch.load(resumed / "checkpoints/last.pth", weights_only=True)["iteration"] == 6
    _assert_bitwise_equal(_weights(full), _weights(resumed))
    log = (resumed / "train.log").read_text()
    assert "resumed from" in log and "at iteration 3" in log


def test_load_from_is_weights_only(shapes_root: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    train(compose_cfg(tiny_train_overrides(shapes_root, first, "trainer.max_iters=2")))
    second = tmp_path / "second"
    cfg = compose_cfg(
        tiny_train_overrides(
            shapes_root,
            second,
            "trainer.max_iters=2",
            f"trainer.load_from={first / 'checkpoints/last.pth'}",
        )
    )
    train(cfg)
    log = (second / "train.log").read_text()
    assert "loaded weights from" in log and "resumed" not in log
    # It trained 2 iterations of its own, starting from the loaded weights.
    assert torch.load(second / "checkpoints/last.pth", weights_only=True)["iteration"] == 2


def test_resume_with_finished_run_does_nothing(shapes_root: Path, tmp_path: Path) -> None:
    cfg = tiny_train_overrides(shapes_root, tmp_path, "trainer.max_iters=2")
    train(compose_cfg(cfg))
    before = (tmp_path / "checkpoints/last.pth").stat().st_mtime_ns
    train(compose_cfg(cfg))
    assert (tmp_path / "checkpoints/last.pth").stat().st_mtime_ns == before
    assert "nothing to do" in (tmp_path / "train.log").read_text()


@pytest.mark.integration
def test_sigterm_saves_and_the_resumed_run_is_exact(shapes_root: Path, tmp_path: Path) -> None:
    extra = [TEST_CONFIGS, "model=tiny_gn", "trainer.max_iters=40", "trainer.val_interval=100"]
    extra += ["trainer.ckpt_interval=100"]
    reference = tmp_path / "reference"
    r = run_tool("train.py", tiny_train_overrides(shapes_root, reference, *extra))
    assert r.returncode == 0, r.stderr[-3000:]

    run = tmp_path / "run"
    overrides = tiny_train_overrides(shapes_root, run, *extra)
    cmd = [sys.executable, str(ROOT / "tools/train.py"), *overrides]
    proc = subprocess.Popen(
        cmd, env=tool_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    log = run / "train.log"
    deadline = time.monotonic() + 120
    while not (log.is_file() and "iter 3/40" in log.read_text()):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    stopped = torch.load(run / "checkpoints/last.pth", weights_only=True)["iteration"]
    assert 3 <= stopped < 40
    assert "re-run the same command to resume" in log.read_text()

    r = run_tool("train.py", overrides)
    assert r.returncode == 0, r.stderr[-3000:]
    assert torch.load(run / "checkpoints/last.pth", weights_only=True)["iteration"] == 40
    _assert_bitwise_equal(_weights(reference), _weights(run))


def test_non_finite_loss_stops_with_one_line(shapes_root: Path, tmp_path: Path) -> None:
    overrides = tiny_train_overrides(
        shapes_root,
        tmp_path,
        TEST_CONFIGS,
        "model=tiny_gn",
        "trainer.max_iters=30",
        "trainer.val_interval=100",
        "trainer.ckpt_interval=1",
        "optimizer.lr=1e30",
    )
    r = run_tool("train.py", overrides)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: non-finite loss") and "iteration" in lines[-1]
    assert "Traceback" not in r.stderr
    last = torch.load(tmp_path / "checkpoints/last.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("key", ["trainer.amp_dtype=fp8"])
def test_bad_trainer_option_is_one_line(shapes_root: Path, tmp_path: Path, key: str) -> None:
    r = run_tool("train.py", tiny_train_overrides(shapes_root, tmp_path, key))
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith("error: trainer.amp_dtype='fp8': expected one of bf16, fp16")
    )
