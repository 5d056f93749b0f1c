"""Saved configs from older versions, upgraded when they are loaded.

A checkpoint carries the resolved config it was trained with, ``_target_``
paths included. When a class moves or merges into another, its old path goes
into :data:`MOVED` (the one table of such changes), and :func:`upgrade_config`
rewrites every node that names it; no module is kept at an old path for the
sake of old files. :func:`ann.engine.checkpoint.load_checkpoint` applies it to
every checkpoint it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Node = dict[str, Any]


def _nonlocal_head(node: Node) -> Node:
    """``NonLocalHead(in_channels=C, in_index=i, ...)`` is the ANN head with no
    fusion block and a dense context block reading res5 (the same modules,
    keys and output: tests/models/test_ablation.py); ``in_channels[0]`` and
    ``in_index[0]``, the unused res4 entry, repeat res5's."""
    node = dict(node)
    channels, index = node.pop("in_channels"), node.pop("in_index", 3)
    node.update(in_channels=[channels, channels], in_index=[index, index])
    node.update(fusion="none", context="dense")
    return node


# old _target_ -> (new _target_, how the node's other keys change, or None)
MOVED: dict[str, tuple[str, Callable[[Node], Node] | None]] = {
    # The evaluator moved from ann/engine to ann/evaluation.
    "ann.engine.evaluator.Evaluator": ("ann.evaluation.evaluator.Evaluator", None),
    # NonLocalHead merged into ANNHead's ablation options (model=nonlocal_r50).
    "ann.models.heads.NonLocalHead": ("ann.models.heads.ANNHead", _nonlocal_head),
    "ann.models.heads.nonlocal_head.NonLocalHead": ("ann.models.heads.ANNHead", _nonlocal_head),
}


def upgrade_config(cfg: Any) -> Any:
    """A copy of ``cfg`` (plain dicts and lists, as a checkpoint stores it)
    with every node whose ``_target_`` is in :data:`MOVED` rewritten."""
    if isinstance(cfg, list):
        return [upgrade_config(v) for v in cfg]
    if not isinstance(cfg, dict):
        return cfg
    node = {k: upgrade_config(v) for k, v in cfg.items()}
    target = node.get("_target_")
    if isinstance(target, str) and target in MOVED:
        new, rewrite = MOVED[target]
        node = rewrite(node) if rewrite else node
        node["_target_"] = new
    return node


__all__ = ["MOVED", "upgrade_config"]
