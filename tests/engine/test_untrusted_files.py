"""Files that hold pickled code are refused, with a message that never
suggests turning the check off: checkpoints, trainer.load_from, resume,
model.backbone.pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from faulty import RunsCode

from ann.commands.train import train
from ann.engine.checkpoint import load_checkpoint
from ann.errors import (
    CheckpointError,
    ConfigError,
    UnreadableCheckpointError,
    UnsafeCheckpointError,
)
from ann.models.backbones import ResNetBackbone
from helpers import compose_cfg, tiny_train_overrides


def _check(message: str, key: str, path: Path, marker: Path) -> None:
    assert message.startswith(f"{key}: {path} holds Python objects besides tensors"), message
    assert "posix.system" in message and "not loaded, for safety" in message
    assert "weights_only" not in message and "\n" not in message
    assert not marker.exists()  # the payload never ran


def test_backbone_pretrained_with_code(tmp_path: Path) -> None:
    marker, path = tmp_path / "ran", tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": RunsCode(marker)}, path)
    with pytest.raises(ConfigError) as info:
        ResNetBackbone(18, pretrained=str(path))
    _check(str(info.value), "model.backbone.pretrained", path, marker)


@pytest.mark.parametrize("key", ["trainer.load_from", "trainer.resume"])
def test_training_refuses_checkpoints_with_code(
    key: str, shapes_root: Path, tmp_path: Path
) -> None:
    marker, run = tmp_path / "ran", tmp_path / "run"
    path = run / "checkpoints" / "last.pth" if key == "trainer.resume" else tmp_path / "w.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "iteration": 1, "x": RunsCode(marker)}, path)
    extra = [f"trainer.load_from={path}"] if key == "trainer.load_from" else []
    # Typed: a resume tells a refused file (stop) from a torn one (try the
    # previous) by this class, not by the message.
    with pytest.raises(UnsafeCheckpointError) as info:
        train(compose_cfg(tiny_train_overrides(shapes_root, run, *extra)))
    _check(str(info.value), key, path, marker)


def test_unsafe_and_unreadable_are_told_apart_by_type(tmp_path: Path) -> None:
    marker, unsafe, torn = tmp_path / "ran", tmp_path / "unsafe.pth", tmp_path / "torn.pth"
    torch.save({"model": {}, "x": RunsCode(marker)}, unsafe)
    torch.save({"model": {"w": torch.zeros(100)}}, torn)
    torn.write_bytes(torn.read_bytes()[:200])
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(unsafe)
    with pytest.raises(UnreadableCheckpointError) as info:
        load_checkpoint(torn)
    assert not isinstance(info.value, UnsafeCheckpointError) and not marker.exists()
    assert issubclass(UnsafeCheckpointError, CheckpointError)
