"""Atomic checkpoint files, loaded with weights_only=True."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ann.errors import CheckpointError
from ann.safe_load import load_tensors


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Writes ``state`` to a temporary file beside ``path`` and renames it into
    place, so a kill during the save never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Deletes the temporary files of saves that a hard kill interrupted
    (``.NAME.pth.XXXX`` beside the checkpoints); returns them."""
    stale = sorted(Path(folder).glob(".*.pth.*")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", key: str = "checkpoint"
) -> dict[str, Any]:
    """Loads a checkpoint dict with ``weights_only=True``; one clear error
    naming ``key`` (the config key that named the file) if the file is
    missing, holds code, or is not a checkpoint of this framework."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{key}: no file at {path}")
    try:
        state = load_tensors(path, key, map_location)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{key}: {path}: expected a dict with a 'model' state dict")
    return state


def load_model_weights(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Loads ``state["model"]`` strictly, naming the mismatch if the checkpoint
    was trained with another architecture or number of classes."""
    weights = state["model"]
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} shape mismatch(es), e.g. {k}: checkpoint "
                f"{tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
            )
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise CheckpointError(
            f"checkpoint {path} does not fit the configured model (another architecture "
            f"or number of classes?): {'; '.join(parts)}"
        )
    model.load_state_dict(weights)


def rng_state() -> dict[str, Any]:
    """Torch, CUDA, numpy and python RNG states as weights_only-loadable values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
