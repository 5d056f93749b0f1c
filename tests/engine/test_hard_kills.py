"""SIGKILL at random points, some inside a checkpoint save: re-running the
same command each time ends with the weights of an uninterrupted run, bit
for bit, and no torn checkpoint is ever read."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import ROOT, run_tool, tiny_train_overrides, tool_env

# The small ANN (ResNet-18): its checkpoints (~130 MB with optimizer state)
# take long enough to write that a kill can land inside a save.
MAX_ITERS = 30
EXTRA = [
    f"trainer.max_iters={MAX_ITERS}",
    "trainer.val_interval=10",
    "trainer.ckpt_interval=1",
    "trainer.keep_last=2",
]


def _temp_files(ckpt_dir: Path) -> list[Path]:
    return list(ckpt_dir.glob(".*.pth.*")) if ckpt_dir.is_dir() else []


def _logged_iterations(log: Path) -> list[int]:
    text = log.read_text() if log.is_file() else ""
    return [int(m) for m in re.findall(r"iter (\d+)/", text)]


def _kill_once(cmd: list[str], run: Path, rng: random.Random, in_save: bool) -> bool:
    """Starts the run and SIGKILLs it (and its workers) a random time after a
    random number of new iterations, or the moment a checkpoint temp file
    appears; True if it died mid-save."""
    ckpt_dir, log = run / "checkpoints", run / "train.log"
    seen = len(_logged_iterations(log))
    proc = subprocess.Popen(
        cmd,
        env=tool_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    before = {p.name for p in _temp_files(ckpt_dir)}
    deadline = time.monotonic() + 120
    mid_save = False
    try:
        if in_save:
            while proc.poll() is None and time.monotonic() < deadline:
                if any(p.name not in before for p in _temp_files(ckpt_dir)):
                    mid_save = True
                    break
                time.sleep(0.0005)
        else:
            target = rng.randint(1, 3)
            while proc.poll() is None and time.monotonic() < deadline:
                if len(_logged_iterations(log)) - seen >= target:
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    return mid_save


@pytest.mark.slow
def test_sigkill_ten_times_then_same_weights(shapes_root: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    r = run_tool("train.py", tiny_train_overrides(shapes_root, reference, *EXTRA))
    assert r.returncode == 0, r.stderr[-3000:]

    run = tmp_path / "run"
    ckpt_dir = run / "checkpoints"
    cmd = [
        sys.executable,
        str(ROOT / "tools/train.py"),
        *tiny_train_overrides(shapes_root, run, *EXTRA),
    ]
    rng = random.Random(0)
    mid_saves, iterations = 0, []
    for k in range(10):
        mid_saves += _kill_once(cmd, run, rng, in_save=k % 2 == 1)
        if (ckpt_dir / "last.pth").is_file():  # never torn: always loads
            iterations.append(torch.load(ckpt_dir / "last.pth", weights_only=True)["iteration"])
    assert mid_saves >= 3, f"only {mid_saves} kills landed inside a save"
    assert iterations and iterations[-1] < MAX_ITERS, iterations  # it was still going

    r = run_tool("train.py", tiny_train_overrides(shapes_root, run, *EXTRA))
    assert r.returncode == 0, r.stderr[-3000:]
    assert _temp_files(ckpt_dir) == []  # stale temp files of killed saves are removed
    final = torch.load(ckpt_dir / "last.pth", weights_only=True)
    expected = torch.load(reference / "checkpoints/last.pth", weights_only=True)
    assert final["iteration"] == MAX_ITERS
    for key, value in expected["model"].items():
        assert torch.equal(final["model"][key], value), key
    best = torch.load(ckpt_dir / "best.pth", weights_only=True)
    ref_best = torch.load(reference / "checkpoints/best.pth", weights_only=True)
    assert best["iteration"] == ref_best["iteration"]
