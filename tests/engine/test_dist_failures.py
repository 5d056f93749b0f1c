"""A rank that exits early or stalls does not hold the others: the survivor
stops with one line naming the rank, within trainer.dist_timeout_min."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers import TEST_CONFIGS, run_tool, tiny_train_overrides


@pytest.mark.parametrize("how", ["exit", "stall"])
def test_rank_that_exits_or_stalls_is_named(how: str, shapes_root: Path, tmp_path: Path) -> None:
    overrides = tiny_train_overrides(
        shapes_root,
        tmp_path / "run",
        TEST_CONFIGS,
        "model=tiny_gn",
        "trainer.max_iters=20",
        "trainer.val_interval=100",
        "trainer.ckpt_interval=100",
        "trainer.dist_timeout_min=0.1",  # 6 s
        "dataset.train._target_=faulty.FaultyShapes",
        f"+dataset.train.counter={tmp_path / 'n'}",
        "+dataset.train.die_on=7",
        f"+dataset.train.how={how}",
        "+dataset.train.rank=1",
        "+dataset.train.stall_s=15",
        "+dataset.train.workers_only=false",
    )
    start = time.monotonic()
    r = run_tool("train.py", overrides, nproc=2, timeout=120)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr[-3000:]
    line = errors[0]
    assert line.startswith("error: distributed: rank 0 at step 4 stopped waiting for rank 1"), line
    why = "it exited or crashed" if how == "exit" else "no answer within trainer.dist_timeout_min"
    # A stall is reported as a timeout, i.e. before the staller woke up (15 s) and exited.
    assert why in line
    assert time.monotonic() - start < 100


# torchrun / several processes each importing torch: the integration tier.
pytestmark = pytest.mark.integration
