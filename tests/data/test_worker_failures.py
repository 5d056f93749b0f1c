"""DataLoader workers: clean starts after OpenCV's pool ran, and a dead
worker ends the run with one line naming the loader, exit 2, last.pth intact."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ann.data.loader import describe_worker_death
from helpers import (
    TEST_CONFIGS,
    checkpoint_overrides,
    run_bounded,
    run_tool,
    tiny_train_overrides,
    tool_env,
)


def test_workers_start_clean_after_the_parent_ran_opencv_threads() -> None:
    """The hang of a forked worker: the parent's OpenCV pool is running (as
    after the prediction grid, or training with num_workers=0) and a new
    loader's workers touch OpenCV. Bounded: a hang fails the test."""
    script = textwrap.dedent(
        """
        import cv2, numpy as np
        from ann.data.loader import build_loader
        from faulty import OpenCVResize
        assert cv2.getNumThreads() > 1
        for _ in range(3):  # the parent's pool runs between loaders, as between validations
            cv2.resize(np.zeros((1024, 2048, 3), np.uint8), (4096, 2048))
            items = [int(b) for b in build_loader(OpenCVResize(), num_workers=2)]
            assert items == [2048, 2049, 2050, 2051], items
        print("ok")
        """
    )
    env = {**tool_env(), "OMP_NUM_THREADS": "2"}
    proc = run_bounded([sys.executable, "-c", script], timeout=90, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def _faulty(split: str, counter: Path, die_on: int, how: str) -> list[str]:
    key = f"dataset.{split}"
    return [
        f"{key}._target_=faulty.FaultyShapes",
        f"+{key}.counter={counter}",
        f"+{key}.die_on={die_on}",
        f"+{key}.how={how}",
    ]


def _failure(script: str, overrides: list[str]) -> str:
    """Runs a tool that must fail as a user error: exit 2, no traceback; its last line."""
    r = run_tool(script, overrides, timeout=180)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r.stderr.strip().splitlines()[-1]


def _intact_iteration(line: str, run: Path) -> int:
    """The iteration the message says last.pth holds, checked against the file."""
    said = int(re.search(r"last\.pth \(iteration (\d+)\) is intact", line).group(1))
    ckpt = torch.load(run / "checkpoints/last.pth", weights_only=True)
    assert ckpt["iteration"] == said
    return said


@pytest.mark.integration
def test_train_worker_segfault(shapes_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = tiny_train_overrides(
        shapes_root,
        run,
        TEST_CONFIGS,
        "model=tiny_gn",
        "trainer.num_workers=1",
        "trainer.max_iters=8",
        "trainer.val_interval=100",
        "trainer.ckpt_interval=2",
        *_faulty("train", tmp_path / "count", 11, "SIGSEGV"),
    )
    line = _failure("train.py", overrides)
    assert line.startswith("error: train loader: DataLoader worker (pid"), line
    assert "SIGSEGV" in line and "image decoder" in line and "trainer.num_workers=0" in line
    assert 2 <= _intact_iteration(line, run) < 8


@pytest.mark.integration
def test_val_worker_killed_at_the_second_validation(shapes_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # 6 val images: the first validation reads items 1-6, the second dies on item 8.
    overrides = tiny_train_overrides(
        shapes_root,
        run,
        TEST_CONFIGS,
        "model=tiny_gn",
        "evaluator.num_workers=1",
        *_faulty("val", tmp_path / "count", 8, "SIGKILL"),
    )
    line = _failure("train.py", overrides)
    assert line.startswith("error: val loader: DataLoader worker (pid"), line
    assert "SIGKILL" in line and "out of memory" in line and "evaluator.num_workers=0" in line
    assert _intact_iteration(line, run) == 2
    # The re-run resumes from it and finishes (the counter is past die_on).
    r = run_tool("train.py", overrides, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.integration
def test_eval_worker_killed(shapes_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = run_tool("train.py", tiny_train_overrides(shapes_root, run, "trainer.max_iters=2"))
    assert r.returncode == 0, r.stderr[-3000:]
    overrides = checkpoint_overrides(
        shapes_root,
        run / "checkpoints/last.pth",
        tmp_path / "eval",
        "evaluator.num_workers=2",
        *_faulty("val", tmp_path / "count", 3, "SIGKILL"),
    )
    line = _failure("eval.py", overrides)
    assert line.startswith("error: eval loader: DataLoader worker (pid"), line
    assert not (tmp_path / "eval" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "DataLoader worker (pid 12) is killed by signal: Bus error. It is possible that "
            "dataloader's workers are out of shared memory.",
            "SIGBUS: shared memory",
        ),
        ("DataLoader worker (pid(s) 12, 13) exited unexpectedly", "exited unexpectedly: it exited"),
        (
            "DataLoader worker (pid 12) exited unexpectedly with exit code 1. Details are lost",
            "exit code 1: it exited",
        ),
    ],
)
def test_worker_death_messages(message: str, expected: str) -> None:
    line = describe_worker_death(RuntimeError(message), "train", "trainer.num_workers")
    assert line is not None and expected in line and "\n" not in line
    assert describe_worker_death(RuntimeError("CUDA out of memory"), "train", "k") is None


class _Unpicklable:
    """A dataset holding a lambda: fine for fork, not for a fork server."""

    def __init__(self) -> None:
        self.transform = lambda x: x

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return self.transform(index)


def test_unpicklable_dataset_is_one_clear_line() -> None:
    from ann.data.loader import build_loader
    from ann.errors import ConfigError

    with pytest.raises(ConfigError, match="must be picklable") as info:
        next(iter(build_loader(_Unpicklable(), num_workers=1)))
    assert "\n" not in str(info.value) and "_Unpicklable" in str(info.value)
    assert list(build_loader(_Unpicklable(), num_workers=0)) == [0, 1]


def test_no_resource_tracker_warning_after_the_error_line() -> None:
    """What a dead worker leaves to multiprocessing's resource tracker is not
    reported after the run's one-line error (the tracker warns at exit)."""
    script = textwrap.dedent(
        """
        from multiprocessing import resource_tracker
        from ann.data.loader import worker_context
        worker_context()
        resource_tracker.register("/ann-test-leaked", "semaphore")  # as a killed worker leaves it
        """
    )
    proc = run_bounded([sys.executable, "-c", script], timeout=60, env=tool_env())
    assert proc.returncode == 0 and "resource_tracker" not in proc.stderr, proc.stderr
