"""Checkpoints on a disk that fills up: each save writes one file (last.pth
and best.pth are hard links to it), a full disk or a failed write is one
``error:`` line with exit 2 and leaves the previous checkpoint loadable, and
resume starts from the newest complete file."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ann.commands.train import train
from ann.engine import checkpoint as ckpt
from ann.errors import CheckpointError, CheckpointSaveError
from helpers import ROOT, TEST_CONFIGS, compose_cfg, run_bounded, run_tool, tiny_train_overrides

TINY = [TEST_CONFIGS, "model=tiny_gn"]


def _state(iteration: int) -> dict:
    return {"model": {"w": torch.full((4,), float(iteration))}, "iteration": iteration}


def _inode(path: Path) -> int:
    return path.stat().st_ino


def _iters(folder: Path) -> list[int]:
    return [it for it, _ in ckpt.iter_files(folder)]


def _assert_one_error_line(stderr: str) -> str:
    """The run's stderr holds one ``error:`` line and no traceback; that line."""
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "Error executing job" not in stderr, stderr[-3000:]
    return errors[0]


def test_each_save_writes_once_and_links_last_and_best(
    shapes_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []
    real_save = torch.save

    def counting_save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        writes.append(1)
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", counting_save)
    extra = ["trainer.max_iters=6", "trainer.keep_last=1"]
    train(compose_cfg(tiny_train_overrides(shapes_root, tmp_path, *TINY, *extra)))
    folder = tmp_path / "checkpoints"
    assert len(writes) == 3  # saves at 2, 4 and 6, one file each
    assert _inode(folder / "last.pth") == _inode(folder / "iter_0000006.pth")
    best_iter = torch.load(folder / "best.pth", weights_only=True)["iteration"]
    assert _inode(folder / "best.pth") == _inode(folder / ckpt.iter_name(best_iter))
    # keep_last=1: the newest periodic file, plus the one best.pth links to.
    assert _iters(folder) == sorted({6, best_iter})


def test_keep_last_never_prunes_the_best_file(tmp_path: Path) -> None:
    """keep_last=2 and ckpt_interval=2; a best at 5 (a validation between
    periodic saves), the run ends at 9."""
    saves = [(2, True), (4, False), (5, True), (6, False), (8, False), (9, False)]
    for iteration, best in saves:
        links = ["best.pth", "last.pth"] if best else ["last.pth"]
        ckpt.write_checkpoint(_state(iteration), tmp_path, iteration, links)
        ckpt.prune_checkpoints(tmp_path, 2, lambda it: it % 2 == 0)
        if iteration == 5:
            assert _iters(tmp_path) == [2, 4, 5]  # 2 is no longer best, but among the newest 2
    assert _iters(tmp_path) == [5, 6, 8, 9]  # best, the newest 2 periodic, last
    assert _inode(tmp_path / "best.pth") == _inode(tmp_path / "iter_0000005.pth")
    assert _inode(tmp_path / "last.pth") == _inode(tmp_path / "iter_0000009.pth")
    assert torch.load(tmp_path / "best.pth", weights_only=True)["iteration"] == 5
    # keep_last=0 keeps only what last.pth and best.pth link to.
    ckpt.prune_checkpoints(tmp_path, 0, lambda it: it % 2 == 0)
    assert _iters(tmp_path) == [5, 9]


def test_resume_picks_the_newest_complete_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for iteration in (2, 4):
        ckpt.write_checkpoint(_state(iteration), tmp_path, iteration, ["last.pth"])
    path, state = ckpt.load_newest(tmp_path)
    assert (path.name, state["iteration"]) == ("last.pth", 4)

    # A save that stopped after its file, before moving last.pth.
    ckpt.write_checkpoint(_state(6), tmp_path, 6, [])
    path, state = ckpt.load_newest(tmp_path)
    assert (path.name, state["iteration"]) == ("iter_0000006.pth", 6)

    # A torn last.pth (not a link: a copy cut short) is skipped with a warning.
    (tmp_path / "last.pth").unlink()
    (tmp_path / "last.pth").write_bytes((tmp_path / "iter_0000004.pth").read_bytes()[:100])
    (tmp_path / "iter_0000006.pth").unlink()
    with caplog.at_level(logging.WARNING):
        path, state = ckpt.load_newest(tmp_path)
    assert (path.name, state["iteration"]) == ("iter_0000004.pth", 4)
    assert "skipped" in caplog.text and "last.pth" in caplog.text

    # A torn newest iter file falls back to the one before.
    (tmp_path / "iter_0000004.pth").write_bytes(b"\0" * 64)
    path, state = ckpt.load_newest(tmp_path)
    assert (path.name, state["iteration"]) == ("iter_0000002.pth", 2)

    (tmp_path / "iter_0000002.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no checkpoint in .* loads"):
        ckpt.load_newest(tmp_path)
    assert ckpt.load_newest(tmp_path / "none") is None


def test_training_resumes_from_newer_iter_file_when_last_is_torn(
    shapes_root: Path, tmp_path: Path
) -> None:
    overrides = tiny_train_overrides(shapes_root, tmp_path, *TINY)
    train(compose_cfg(overrides))  # saves at 2 and 4
    folder = tmp_path / "checkpoints"
    torn = (folder / "last.pth").read_bytes()[:1000]
    (folder / "last.pth").unlink()  # unlinks this name only: iter_0000004.pth is intact
    (folder / "last.pth").write_bytes(torn)
    train(compose_cfg([*overrides, "trainer.max_iters=6"]))
    log = (tmp_path / "train.log").read_text()
    assert f"resumed from {folder / 'iter_0000004.pth'} at iteration 4" in log
    assert "(from 4)" in log and "skipped" in log
    assert torch.load(folder / "last.pth", weights_only=True)["iteration"] == 6


def test_failed_write_is_one_line_and_keeps_the_previous_checkpoint(
    shapes_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the save at iteration 4
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(ckpt.os, "fsync", fsync)
    overrides = tiny_train_overrides(shapes_root, tmp_path, *TINY)
    with pytest.raises(CheckpointSaveError) as info:
        train(compose_cfg(overrides))
    folder = tmp_path / "checkpoints"
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"could not save checkpoint {folder / 'iter_0000004.pth'}: ")
    assert "the disk is full" in message and "bytes), free there: " in message
    assert "trainer.keep_last=N" in message and "output_dir=" in message
    assert f"{folder / 'last.pth'} (iteration 2) is intact" in message
    assert sorted(p.name for p in folder.iterdir()) == ["best.pth", "iter_0000002.pth", "last.pth"]
    assert torch.load(folder / "last.pth", weights_only=True)["iteration"] == 2


def test_torch_write_error_and_no_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt.write_checkpoint(_state(2), tmp_path, 2, ["last.pth"])

    def torn_save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        f.write(b"PK" * 100)  # type: ignore[attr-defined]
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 30")

    with monkeypatch.context() as m:
        m.setattr(torch, "save", torn_save)
        with pytest.raises(CheckpointSaveError, match="iter_0000004.pth: the disk is full"):
            ckpt.write_checkpoint(_state(4), tmp_path, 4, ["last.pth"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_0000002.pth", "last.pth"]

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(ckpt.os, "link", no_links)
    with caplog.at_level(logging.WARNING):
        ckpt.write_checkpoint(_state(4), tmp_path, 4, ["best.pth", "last.pth"])
    assert "refuses hard links" in caplog.text
    assert _inode(tmp_path / "last.pth") != _inode(tmp_path / "iter_0000004.pth")
    assert torch.load(tmp_path / "last.pth", weights_only=True)["iteration"] == 4
    assert torch.load(tmp_path / "best.pth", weights_only=True)["iteration"] == 4


_FAULTY_TRAIN = """\
import runpy, sys, torch
real, calls = torch.save, []
def save(obj, f, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # as torch reports a full disk in the middle of a file
        f.write(b"PK" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 6 vs 2")
    real(obj, f, *args, **kwargs)
torch.save = save
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_train_tool_with_a_failing_write_then_resumes(shapes_root: Path, tmp_path: Path) -> None:
    """tools/train.py whose second save fails as torch fails on a full disk:
    one line, exit 2; the same command then resumes from iteration 2."""
    wrapper = tmp_path / "faulty_train.py"
    wrapper.write_text(_FAULTY_TRAIN)
    run = tmp_path / "run"
    overrides = tiny_train_overrides(shapes_root, run, *TINY)
    cmd = [sys.executable, str(wrapper), str(ROOT / "tools/train.py"), *overrides]
    r = run_bounded(cmd, timeout=180)
    assert r.returncode == 2, r.stderr[-3000:]
    line = _assert_one_error_line(r.stderr)
    assert f"{run / 'checkpoints/iter_0000004.pth'}: the disk is full" in line
    assert "needs" in line and "free there" in line
    r = run_tool("train.py", overrides, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(from 2)" in (run / "train.log").read_text()


def _mount_tmpfs(folder: Path, size_mb: int) -> str | None:
    """Mounts a tmpfs of ``size_mb`` at ``folder``; why not, if it could not."""
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return None if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")


@pytest.mark.integration
def test_full_tmpfs_is_one_line_and_the_rerun_resumes(shapes_root: Path, tmp_path: Path) -> None:
    """ann_r18 (~96 MB a checkpoint, the demo's model when a user hit this) on a
    150 MB filesystem: the save at 2 fits, the one at 4 does not; after the
    filesystem grows, the same command resumes from iteration 2."""
    disk = tmp_path / "disk"
    why = _mount_tmpfs(disk, 150)
    if why is not None:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {why}")
    try:
        run = disk / "run"
        overrides = tiny_train_overrides(shapes_root, run, "model=ann_r18")
        r = run_tool("train.py", overrides, timeout=240)
        assert r.returncode == 2, r.stderr[-3000:]
        line = _assert_one_error_line(r.stderr)
        folder = run / "checkpoints"
        assert line.startswith(
            f"error: could not save checkpoint {folder / 'iter_0000004.pth'}: not enough free space"
        )
        assert "a checkpoint needs 9" in line and "bytes), free there: " in line  # ~92 MiB
        assert f"{folder / 'last.pth'} (iteration 2) is intact" in line
        assert sorted(p.name for p in folder.iterdir()) == [
            "best.pth",
            "iter_0000002.pth",
            "last.pth",
        ]

        subprocess.run(["mount", "-o", "remount,size=400m", str(disk)], check=True, timeout=30)
        r = run_tool("train.py", overrides, timeout=240)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "(from 2)" in (run / "train.log").read_text()
        assert torch.load(folder / "last.pth", weights_only=True)["iteration"] == 4
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, timeout=30)
