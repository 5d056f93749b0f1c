"""Configs saved by older versions still load: ann/config/compat.py rewrites
the ``_target_`` paths of classes that moved or merged, from one table, when a
checkpoint is read (no module is kept at an old path)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ann import Segmenter
from ann.config.compat import MOVED, upgrade_config
from ann.engine.checkpoint import load_checkpoint
from ann.models.heads import NonLocal2d
from helpers import compose_cfg


def test_old_paths_are_gone_and_new_ones_import() -> None:
    for old, (new, _) in MOVED.items():
        module, name = old.rsplit(".", 1)
        try:
            assert not hasattr(importlib.import_module(module), name), old
        except ModuleNotFoundError:
            pass
        module, name = new.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name), new


def _old_checkpoint(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A model=nonlocal_r50 checkpoint (ResNet-18 backbone: small) whose
    config says what a run of an older version saved: the evaluator under
    ann.engine.evaluator and the head as NonLocalHead with its own keys."""
    cfg = compose_cfg(["model=nonlocal_r50", "model/backbone=resnet18"])
    config = OmegaConf.to_container(cfg, resolve=True)
    model = instantiate(cfg.model).eval()
    head = config["model"]["decode_head"]
    config["model"]["decode_head"] = {
        "_target_": "ann.models.heads.NonLocalHead",
        "in_channels": head["in_channels"][1],
        "in_index": 3,
        **{k: head[k] for k in ("channels", "num_classes", "key_channels", "value_channels")},
        **{k: head[k] for k in ("block_dropout", "dropout", "attention")},
    }
    config["evaluator"]["_target_"] = "ann.engine.evaluator.Evaluator"
    path = tmp_path / "old.pth"
    torch.save({"model": model.state_dict(), "config": config, "iteration": 1}, path)
    return path, model


def test_an_old_saved_config_still_loads(tmp_path: Path) -> None:
    path, model = _old_checkpoint(tmp_path)
    cfg = load_checkpoint(path)["config"]
    assert cfg["evaluator"]["_target_"] == "ann.evaluation.evaluator.Evaluator"
    assert cfg["model"]["decode_head"]["_target_"] == "ann.models.heads.ANNHead"
    # Every component instantiates from the upgraded config.
    instantiate(OmegaConf.create(cfg["evaluator"]))
    seg = Segmenter.from_checkpoint(path, device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    assert seg.predict(image).shape == (40, 48)
    # The same weights: the loaded head's parameters are the saved model's.
    for (k, a), (_, b) in zip(
        seg.model.state_dict().items(), model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    assert isinstance(seg.model.decode_head.context, NonLocal2d)


@pytest.mark.parametrize("value", [[1, {"_target_": "ann.engine.evaluator.Evaluator"}], "x", 3])
def test_upgrade_walks_lists_and_leaves_values(value: object) -> None:
    out = upgrade_config({"a": value})["a"]
    if isinstance(value, list):
        assert out == [1, {"_target_": "ann.evaluation.evaluator.Evaluator"}]
    else:
        assert out == value
