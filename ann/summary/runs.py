"""Finding and reading runs: what a run directory holds and when one is skipped.

What a run directory holds (:mod:`ann.engine.trainer`, :mod:`ann.commands.eval`):

- a training run: config.yaml, train.log, checkpoints/, tb/ (TensorBoard
  scalars ``val/mIoU`` ... at each validation) and, from the first validation
  on, metrics.json with the last validation's metrics;
- an evaluation (tools/eval.py): config.yaml (with a ``checkpoint`` key),
  eval.log, metrics.json, metrics.csv.

A run with validations that did not reach ``trainer.max_iters`` (stopped,
failed or still running) is counted with the iterations it reached and
listed as unfinished. A run without metrics.json (killed before its first
validation, an evaluation that did not finish), a folder that is not a run
and a job of a Hydra sweep that left no folder (see
:func:`ann.summary.sweep.missing_jobs`) are reported as skipped, with the reason.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from ann.summary.history import read_history

if TYPE_CHECKING:
    from ann.summary.history import _Curve

# Any of these makes a folder a run (or the remains of one).
RUN_FILES = ("config.yaml", "metrics.json", "train.log", "eval.log")
SEED_KEY = "trainer.seed"
# The files a summary is written to (:mod:`ann.summary.report`).
OUTPUT_NAMES = ("summary.md", "summary.csv", "summary_per_class.csv")
# Files of a folder of runs that are not junk: summaries, a Hydra sweep's description.
_NOT_JUNK = (*OUTPUT_NAMES, "multirun.yaml")


class _Skip(Exception):
    """Raised while reading a run that cannot be counted; the message says why."""


@dataclass
class Run:
    """One run that has at least one validation (or one evaluation)."""

    path: Path
    kind: str  # "train" or "eval"
    # Flattened config without the seed and the location keys: what groups runs.
    identity: dict[str, str]
    seed: str
    miou: float  # the last validation's (a training run) or the evaluation's mIoU
    best_miou: float | None  # the best validation's; None for an evaluation
    per_class: dict[str, float | None]
    iteration: int  # of the last validation, or of the evaluated checkpoint
    iterations: int  # the last iteration reached (an evaluation: its checkpoint's)
    max_iters: int | None
    wall_time_s: float | None

    @property
    def finished(self) -> bool:
        """A training run validates at its last iteration; an evaluation is done
        once it wrote metrics.json."""
        return self.kind == "eval" or self.max_iters is None or self.iteration >= self.max_iters


@dataclass
class Skipped:
    """A folder (or an expected one) that is not counted, and why."""

    path: Path
    reason: str


# -- reading one run --------------------------------------------------------


def is_location_key(key: str) -> bool:
    """Keys that only say where a run's data and outputs live (or what it is
    called, which names its folder): runs differing in them alone are repeats
    of one configuration."""
    return (
        key in ("output_dir", "name")
        or key.startswith("paths.")
        or (key.startswith("dataset.") and key.rsplit(".", 1)[-1] == "root")
    )


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{"optimizer.lr": 0.01, ...}``; lists stay values."""
    if not isinstance(node, dict):
        return {prefix: node}
    if not node and prefix:
        return {prefix: {}}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def value_text(value: Any) -> str:
    """How a config value is shown and compared: strings as they are, the rest as YAML/JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def read_config(path: Path) -> dict[str, Any]:
    """The flattened config.yaml of the run folder ``path``; raises _Skip."""
    file = path / "config.yaml"
    if not file.is_file():
        raise _Skip("no config.yaml: its configuration is unknown")
    try:
        cfg = OmegaConf.load(file)
    except Exception as exc:  # any parse error makes it unusable
        raise _Skip(f"config.yaml is not readable YAML ({first_line(exc)})") from None
    if not isinstance(cfg, DictConfig):
        raise _Skip("config.yaml is not a mapping of config keys")
    # The file is already resolved; not resolving again keeps a stray "${"
    # in a value from failing the whole run.
    return flatten(OmegaConf.to_container(cfg, resolve=False))


def read_metrics(path: Path) -> dict | None:
    """metrics.json of the run folder ``path``, None if there is none; raises _Skip."""
    file = path / "metrics.json"
    if not file.is_file():
        return None
    try:
        metrics = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise _Skip(f"metrics.json is not readable JSON ({first_line(exc)})") from None
    if not isinstance(metrics, dict) or not _is_number(metrics.get("mIoU")):
        raise _Skip("metrics.json has no numeric mIoU")
    return metrics


def read_run(path: Path) -> Run:
    """The run in folder ``path``; raises _Skip with the reason it cannot be counted."""
    config = read_config(path)
    kind = "eval" if "checkpoint" in config else "train"
    curve = None
    if kind == "train":
        curve = read_history(path)
    metrics = read_metrics(path)
    max_iters = config.get("trainer.max_iters")
    max_iters = int(max_iters) if _is_number(max_iters) else None
    if metrics is None:
        raise _no_metrics(kind, curve, max_iters)
    iteration = int(metrics.get("iteration") or 0)
    best = None
    if kind == "train":
        best = _best_miou(curve, iteration, float(metrics["mIoU"]))
    iterations = iteration
    if curve is not None and curve.last_iteration is not None:
        iterations = max(iterations, curve.last_iteration)
    per_class = _per_class_iou(metrics)
    identity = {
        k: value_text(v) for k, v in config.items() if k != SEED_KEY and not is_location_key(k)
    }
    seed = value_text(config[SEED_KEY]) if SEED_KEY in config else "?"
    if kind == "eval":
        seed = ""  # the checkpoint's training seed is not in the evaluation's config
    return Run(
        path=path,
        kind=kind,
        identity=identity,
        seed=seed,
        miou=float(metrics["mIoU"]),
        best_miou=best,
        per_class=per_class,
        iteration=iteration,
        iterations=iterations,
        max_iters=max_iters if kind == "train" else None,
        wall_time_s=curve.wall_time_s if curve is not None else None,
    )


def _no_metrics(kind: str, curve: _Curve | None, max_iters: int | None) -> _Skip:
    """Why a run without metrics.json is skipped: an unfinished evaluation, a
    deleted file (``curve`` holds validations) or a run stopped before its
    first validation (with the iteration it reached)."""
    if kind == "eval":
        return _Skip("no metrics.json: the evaluation did not finish")
    if curve is not None and curve.val_miou:
        return _Skip(
            "no metrics.json, though its metrics.jsonl, TensorBoard events or train.log "
            f"hold validations up to iteration {max(curve.val_miou)} (was it deleted?)"
        )
    reached = curve.last_iteration if curve is not None else None
    where = (
        f"reached iteration {reached} of {max_iters}"
        if reached is not None
        else "no iteration logged"
    )
    return _Skip(f"no metrics.json: stopped before its first validation ({where})")


def _best_miou(curve: _Curve | None, iteration: int, miou: float) -> float:
    """The best validation mIoU of a training run whose metrics.json holds
    ``miou`` at ``iteration``."""
    # metrics.json is the last validation; it counts too if the event
    # files or train.log lost it (a kill between the two writes).
    history = dict(curve.val_miou) if curve is not None else {}
    history[iteration] = miou
    return max(history.values())


def _per_class_iou(metrics: dict) -> dict[str, float | None]:
    """metrics.json's per-class IoU, ``{name: IoU}``; None where it has no number."""
    return {
        str(name): (float(row["IoU"]) if _is_number(row.get("IoU")) else None)
        for name, row in (metrics.get("per_class") or {}).items()
        if isinstance(row, dict)
    }


# -- finding runs -----------------------------------------------------------


def find_runs(roots: Sequence[Path]) -> tuple[list[Run], list[Skipped]]:
    """Every run under ``roots`` and every folder skipped, in path order.

    A folder is a run if it holds one of :data:`RUN_FILES`. Folders inside
    runs (checkpoints/, tb/, an evaluation's predictions/) are not reported;
    any other folder without subfolders and without run files is (junk, or
    the empty folder of a job that failed before writing config.yaml).
    Hidden folders (.hydra, .git) are not entered.
    """
    runs: list[Run] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()
    for root in roots:
        run_dirs: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            path = Path(dirpath)
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            inside_run = any(path.is_relative_to(r) for r in run_dirs)
            if any(name in filenames for name in RUN_FILES):
                run_dirs.append(path)
                try:
                    runs.append(read_run(path))
                except _Skip as why:
                    skipped.append(Skipped(path, str(why)))
            elif not dirnames and not inside_run:
                others = [f for f in filenames if f not in _NOT_JUNK]
                if not filenames:
                    skipped.append(
                        Skipped(
                            path, "empty folder (a job that failed before it wrote config.yaml?)"
                        )
                    )
                elif others:
                    skipped.append(Skipped(path, f"not a run: no {', '.join(RUN_FILES)}"))
    return runs, skipped


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
