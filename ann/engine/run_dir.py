"""A run folder is one run.

Re-running a command resumes its run only with the same training config:
the keys of :data:`MAY_CHANGE_ON_RESUME` may differ (each change is logged),
any other difference stops the start with one line naming the keys, unless
``trainer.resume=force``. Nothing is written into the folder until the start
has succeeded (data found, model built, checkpoint restored): a start that
fails leaves an existing run folder as it was. A config that trained the
run is never overwritten: when a start brings another config, the previous
``config.yaml`` is kept as ``config.until_iter_NNNNNNN.yaml`` (the iteration
at which the new one takes over).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ann import dist
from ann.config.record import write_config
from ann.errors import ConfigError

log = logging.getLogger(__name__)

# Keys (or key prefixes) that may change when a run resumes: how long it
# runs and how often it validates, saves and logs, how data is loaded, where
# files are, and how validation evaluates. None changes what a training
# iteration computes, except trainer.max_iters, which also stretches the poly
# schedule (extending a run on purpose is what it is for).
MAY_CHANGE_ON_RESUME = (
    "trainer.max_iters",
    "trainer.val_interval",
    "trainer.ckpt_interval",
    "trainer.log_interval",
    "trainer.keep_last",
    "trainer.num_workers",
    "trainer.num_vis",
    "trainer.resume",
    "trainer.load_from",
    "trainer.dist_timeout_min",
    "trainer.hooks",
    "evaluator.",
    "output_dir",
    "paths.",
    "dataset.root",
)


def may_change(key: str) -> bool:
    """Whether dotted ``key`` may differ between a run's starts."""
    if key.startswith("dataset.") and key.endswith(".root"):
        return True  # dataset.root and the splits' roots interpolated from it
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in MAY_CHANGE_ON_RESUME)


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"trainer.max_iters": 40000, ...}: the leaves of a nested dict/list."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def config_changes(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every leaf that differs between two
    resolved configs; a key only one of them has shows ``<absent>``."""
    a, b = _leaves(old), _leaves(new)
    absent = "<absent>"
    return [
        (key, a.get(key, absent), b.get(key, absent))
        for key in sorted(a.keys() | b.keys())
        if a.get(key, absent) != b.get(key, absent)
    ]


def _describe(changes: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{k} {old!r} -> {new!r}" for k, old, new in changes)


def check_resume(cfg: DictConfig, out_dir: Path) -> list[tuple[str, Any, Any]]:
    """The differences between ``cfg`` and the config the run in ``out_dir``
    last started with (its ``config.yaml``); raises a one-line ConfigError
    if any key outside :data:`MAY_CHANGE_ON_RESUME` differs and
    ``trainer.resume`` is not ``force``. Reads only; writes nothing."""
    saved = out_dir / "config.yaml"
    if not saved.is_file():
        return []
    old = OmegaConf.to_container(OmegaConf.load(saved), resolve=False)
    changes = config_changes(old, OmegaConf.to_container(cfg, resolve=True))
    blocking = [c for c in changes if not may_change(c[0])]
    if blocking and cfg.trainer.resume != "force":
        raise ConfigError(
            f"{out_dir} holds a run trained with another config: {_describe(blocking)}; "
            "start a new run with name=NEW_NAME (or output_dir=DIR), or continue this one "
            "with the new config on purpose with trainer.resume=force"
        )
    return changes


def start_run(
    cfg: DictConfig,
    out_dir: Path,
    changes: list[tuple[str, Any, Any]],
    start_iter: int | None,
) -> None:
    """Commits a start that succeeded (main process only): creates ``out_dir``
    and writes ``config.yaml``. A previous config.yaml that differs is kept
    first, as ``config.until_iter_NNNNNNN.yaml`` when the run resumes at
    ``start_iter``, or ``config.before_restart_<time>.yaml`` when it starts
    over (``start_iter`` None); the changes are logged."""
    if not dist.is_main():
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    saved, text = out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True)
    if saved.is_file():
        if saved.read_text() == text:
            return
        stem = (
            f"config.until_iter_{start_iter:07d}"
            if start_iter is not None
            else f"config.before_restart_{time.strftime('%Y%m%d-%H%M%S')}"
        )
        keep, n = out_dir / f"{stem}.yaml", 2
        while keep.exists():
            keep, n = out_dir / f"{stem}-{n}.yaml", n + 1
        saved.rename(keep)
        for key, old, new in changes:
            level = logging.INFO if may_change(key) else logging.WARNING
            log.log(level, "config changed on resume: %s %r -> %r", key, old, new)
        log.info("the previous config is kept as %s", keep.name)
    write_config(cfg, out_dir)


__all__ = ["MAY_CHANGE_ON_RESUME", "check_resume", "config_changes", "may_change", "start_run"]
