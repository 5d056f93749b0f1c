"""Checkpoint files as the source code bases publish them (mmsegmentation's
model zoo, the authors' runner), and this project's model loaded from a
converted one: for the conversion, registry and API tests."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from ann.engine.checkpoint import load_checkpoint, load_model_weights
from ann.models.pretrained import without_pretrained
from helpers import compose_cfg


def save_mmseg(net: nn.Module, path: Path, config: str = "crop_size = (512, 1024)") -> Path:
    """A v0.5 model-zoo file: {"meta", "state_dict"}, meta["config"] the config text."""
    meta = {"mmseg_version": "0.5.0+b2724da", "config": config, "CLASSES": ["road"] * 19}
    torch.save({"meta": meta, "state_dict": net.state_dict()}, path)
    return path


def save_official(net: nn.Module, path: Path) -> Path:
    """As their runner saves it: DataParallel's "module." keys, config and runner state."""
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    config = {"network": {"backbone": "deepbase_resnet101_dilated8", "multi_grid": [1, 1, 1]}}
    torch.save({"config_dict": config, "state_dict": state, "runner_state": {"iters": 60000}}, path)
    return path


def model_for(experiment: str, checkpoint: Path) -> nn.Module:
    """``experiment``'s model with the weights of a converted ``checkpoint``, in eval mode."""
    net = instantiate(without_pretrained(compose_cfg([f"experiment={experiment}"]).model))
    load_model_weights(net, load_checkpoint(checkpoint), checkpoint)
    return net.eval()
