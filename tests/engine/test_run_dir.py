"""A run folder is one run: a re-run resumes only with the same training
config, every config that trained the run is kept, and a start that fails
leaves the folder as it was (ann/engine/run_dir.py)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import yaml

from ann.commands.train import train
from ann.engine.run_dir import config_changes, may_change
from ann.errors import ConfigError, UserError
from helpers import compose_cfg, tiny_train_overrides

EXTRA = ("trainer.max_iters=2", "trainer.val_interval=2", "trainer.ckpt_interval=2")


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` -> the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def run(shapes_root: Path, tmp_path: Path) -> Path:
    """A 2-iteration demo run, trained in ``tmp_path/run``."""
    out = tmp_path / "run"
    train(compose_cfg(tiny_train_overrides(shapes_root, out, *EXTRA)))
    return out


def _again(shapes_root: Path, out: Path, *extra: str) -> dict:
    return train(compose_cfg(tiny_train_overrides(shapes_root, out, *EXTRA, *extra)))


def test_changed_training_config_stops_and_changes_nothing(shapes_root: Path, run: Path) -> None:
    before = _snapshot(run)
    with pytest.raises(ConfigError) as info:
        _again(
            shapes_root,
            run,
            "trainer.max_iters=4",
            "optimizer.lr=0.5",
            "model.decode_head.dropout=0.3",
        )
    line = str(info.value)
    assert "\n" not in line
    assert "optimizer.lr 0.06 -> 0.5" in line and "model.decode_head.dropout 0.1 -> 0.3" in line
    assert "trainer.max_iters" not in line  # may change: not named
    assert "name=" in line and "trainer.resume=force" in line
    assert _snapshot(run) == before


def test_force_continues_and_keeps_both_configs(
    shapes_root: Path, run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = (run / "config.yaml").read_text()
    with caplog.at_level(logging.INFO, logger="ann"):
        _again(shapes_root, run, "trainer.max_iters=4", "optimizer.lr=0.5", "trainer.resume=force")
    assert (run / "config.until_iter_0000002.yaml").read_text() == first
    now = yaml.safe_load((run / "config.yaml").read_text())
    assert now["optimizer"]["lr"] == 0.5 and now["trainer"]["max_iters"] == 4
    log = (run / "train.log").read_text()
    assert "resumed from" in log and "at iteration 2" in log
    assert "config changed on resume: optimizer.lr 0.06 -> 0.5" in log
    assert "config changed on resume: trainer.max_iters 2 -> 4" in log


def test_keys_that_may_change_resume_and_are_logged(shapes_root: Path, run: Path) -> None:
    _again(shapes_root, run, "trainer.max_iters=3", "trainer.log_interval=5", "evaluator.flip=true")
    log = (run / "train.log").read_text()
    assert "config changed on resume: trainer.max_iters 2 -> 3" in log
    assert "config changed on resume: evaluator.flip False -> True" in log
    assert (run / "config.until_iter_0000002.yaml").is_file()


def test_same_command_resumes_without_writing_a_config(shapes_root: Path, run: Path) -> None:
    config = (run / "config.yaml").read_bytes()
    _again(shapes_root, run)
    assert (run / "config.yaml").read_bytes() == config
    assert not list(run.glob("config.until_*"))


def test_failed_start_changes_nothing(shapes_root: Path, run: Path, tmp_path: Path) -> None:
    """A restart (trainer.resume=false) whose weights file is missing fails
    before training: the folder keeps every byte, the log included."""
    before = _snapshot(run)
    missing = f"trainer.load_from={tmp_path}/no.pth"
    with pytest.raises(UserError):
        _again(shapes_root, run, "trainer.resume=false", "optimizer.lr=0.01", missing)
    assert _snapshot(run) == before
    with pytest.raises(UserError):
        _again(shapes_root, tmp_path / "new", missing)
    assert not (tmp_path / "new").exists() or not any((tmp_path / "new").iterdir())


def test_restart_keeps_the_old_config(shapes_root: Path, run: Path) -> None:
    first = (run / "config.yaml").read_text()
    _again(shapes_root, run, "trainer.resume=false", "optimizer.lr=0.01")
    [kept] = run.glob("config.before_restart_*.yaml")
    assert kept.read_text() == first


def test_which_keys_may_change() -> None:
    for key in ("trainer.max_iters", "evaluator.flip", "dataset.root", "dataset.val.root"):
        assert may_change(key), key
    for key in ("optimizer.lr", "trainer.batch_size", "model.decode_head.dropout", "trainer.amp"):
        assert not may_change(key), key
    old = {"a": {"b": 1, "c": [1, 2]}, "d": 0}
    assert config_changes(old, {"a": {"b": 2, "c": [1, 2]}, "e": 1}) == [
        ("a.b", 1, 2),
        ("d", 0, "<absent>"),
        ("e", "<absent>", 1),
    ]
