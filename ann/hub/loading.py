"""One way to turn a config and a checkpoint into a model, for every caller:
``ann.api.Segmenter``, tools/eval.py, tools/infer.py, tools/export.py,
``trainer.load_from`` and the benchmarks.

A checkpoint is named by a path or ``zoo:NAME`` (:mod:`ann.hub.zoo`). Its
model is rebuilt from the config it carries: a trained checkpoint holds its
resolved config, a converted one names its experiment
(:func:`checkpoint_config`). The tools compose their config before they read
the checkpoint, so :func:`with_checkpoint_config` puts the checkpoint's
``model``, ``dataset`` and ``evaluator`` in when the command line named no
``experiment=``, keeping what the command line set.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from ann.config.compose import apply_overrides, compose
from ann.config.schema import check_config, check_keys
from ann.engine.checkpoint import load_checkpoint, load_model_weights
from ann.errors import CheckpointError
from ann.hub import zoo
from ann.models.pretrained import without_pretrained

# The parts of a config that describe the checkpoint's model and its data
# (classes, palette, evaluation transform) and how it is evaluated.
SECTIONS = ("model", "dataset", "evaluator")
# The groups a rebuilt model is checked against the schema for (the training
# cross-key rules, e.g. crop within scale, do not apply to inference).
INFERENCE_GROUPS = ("model", "evaluator")


def open_checkpoint(
    spec: str | Path, key: str = "checkpoint", map_location: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any]]:
    """The file a path or ``zoo:NAME`` names (downloaded and converted once
    for a registry name) and its state, loaded with ``weights_only=True``."""
    path = zoo.resolve(spec, key)
    return path, load_checkpoint(path, map_location, key)


def recorded_experiment(state: dict[str, Any]) -> str | None:
    """The experiment a checkpoint records: a converted one's ``experiment``,
    a trained one's config ``name`` (its experiment's, unless renamed)."""
    if state.get("experiment"):
        return str(state["experiment"])
    config = state.get("config")
    return str(config.get("name")) if isinstance(config, dict) and config.get("name") else None


def load_model(
    model_cfg: DictConfig,
    state: dict[str, Any] | None = None,
    path: str | Path = "checkpoint",
    device: torch.device | str | None = None,
) -> nn.Module:
    """``model_cfg`` built without ImageNet weights (never downloads), filled
    strictly from ``state["model"]`` (a :func:`load_checkpoint` dict read
    from ``path``; None: random weights, for benchmarks and shape checks),
    moved to ``device`` (None: left where it was built, e.g. on the meta
    device for counting), in eval mode. A checkpoint that does not fit is one
    :class:`CheckpointError` line that names the experiment it records."""
    model = instantiate(without_pretrained(model_cfg))
    if state is not None:
        try:
            load_model_weights(model, state, path)
        except CheckpointError as exc:
            recorded = recorded_experiment(state)
            if recorded is None:
                raise
            raise CheckpointError(
                f"{exc}; the checkpoint records experiment {recorded}: leave experiment= out "
                f"to rebuild the checkpoint's own model, or pass experiment={recorded}"
            ) from None
    return (model if device is None else model.to(device)).eval()


def checkpoint_config(
    state: dict[str, Any],
    path: str | Path,
    experiment: str | None = None,
    overrides: Sequence[str] = (),
) -> DictConfig:
    """The config to rebuild a checkpoint's model: the resolved one a trained
    checkpoint carries, else the composed experiment a converted one names
    (``experiment`` overrides either; ``overrides`` apply on top)."""
    if experiment is None and isinstance(state.get("config"), dict):
        cfg = apply_overrides(OmegaConf.create(state["config"]), overrides)
        # The saved groups may predate keys added since: check what was changed.
        check_keys(cfg, [o.split("=", 1)[0].lstrip("+") for o in overrides])
        return cfg
    name = experiment or state.get("experiment")
    if not name:
        raise CheckpointError(
            f"{path}: holds neither a config nor an experiment name; pass experiment=NAME "
            "(the configs/experiment/ file its model was trained with)"
        )
    cfg = compose("train", [f"experiment={name}", *overrides])
    check_config(cfg, INFERENCE_GROUPS)  # as the command line checks it
    return cfg


def _override_keys(overrides: Sequence[str]) -> list[str]:
    """``["model.x=1", "+a.b=2", "evaluator=slide"]`` -> ``["model.x", "a.b", "evaluator"]``."""
    return [o.split("=", 1)[0].lstrip("+~") for o in overrides]


def _relink_root(section: Any, root: str | None = None) -> Any:
    """A resolved ``dataset`` section with its paths under ``dataset.root``
    written as ``${dataset.root}`` again, so that ``dataset.root=...`` on the
    command line moves its splits too (a trained checkpoint's config is
    resolved: its splits name the training machine's folder)."""
    if root is None:
        root = section.get("root") if isinstance(section, dict) else None
        if not isinstance(root, str) or not root:
            return section
        return {k: v if k == "root" else _relink_root(v, root) for k, v in section.items()}
    if isinstance(section, dict):
        return {k: _relink_root(v, root) for k, v in section.items()}
    if isinstance(section, list):
        return [_relink_root(v, root) for v in section]
    if isinstance(section, str) and (section == root or section.startswith(root.rstrip("/") + "/")):
        return "${dataset.root}" + section[len(root.rstrip("/")) :]
    return section


def with_checkpoint_config(
    cfg: DictConfig, state: dict[str, Any], path: str | Path, overrides: Sequence[str] | None
) -> DictConfig:
    """A tool's composed ``cfg`` with the checkpoint's own ``model``,
    ``dataset``, ``evaluator`` and ``name`` (unless the command line sets
    ``name`` or ``output_dir``) when ``overrides`` (the command line's)
    name no ``experiment``. A section whose group the command line chose
    (``evaluator=slide``, ``model/decode_head=...``) stays as composed; the
    command line's ``key=value`` values inside a taken section are set on
    top (``dataset.root=...``). ``overrides`` None (a caller that composed
    the config itself) or a checkpoint with no config or experiment: ``cfg``
    unchanged."""
    keys = _override_keys(overrides or [])
    if overrides is None or "experiment" in keys:
        return cfg
    try:
        own = checkpoint_config(state, path)
    except CheckpointError:
        return cfg  # a bare state dict: the composed config is all there is
    out = copy.deepcopy(cfg)
    with open_dict(out):
        for section in SECTIONS:
            chosen = section in keys or any(k.startswith(section + "/") for k in keys)
            if chosen or section not in own:
                continue
            taken = OmegaConf.create(
                _relink_root(OmegaConf.to_container(own[section], resolve=True))
            )
            for key in keys:
                if key.startswith(section + "."):
                    value = OmegaConf.select(cfg, key, default=None)
                    OmegaConf.update(taken, key[len(section) + 1 :], value, force_add=True)
            out[section] = taken
        # The run's name too, so that outputs land beside the run's own
        # (outputs/<name>/eval), not under the tool's default name.
        if not {"name", "output_dir"} & set(keys) and isinstance(own.get("name"), str):
            out.name = own.name
    return out
