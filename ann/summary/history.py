"""A training run's course: its validations' mIoU, the last iteration it
reached and its wall time (:func:`read_history`). The validations come from
``metrics.jsonl`` (a line per validation, as the trainer writes it); the
iterations and wall time from the TensorBoard event files (``tb/``). Runs
written before metrics.jsonl existed are read from their event files
(``val/mIoU``) or else their train.log, here and nowhere else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ann import metric_names as names

_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_LOG_ITER = re.compile(r" iter (\d+)/(\d+) ")
_LOG_VAL = re.compile(r" validation at iteration (\d+):")
_LOG_MIOU = re.compile(r"^mIoU +([\d.]+) ")


@dataclass
class _Curve:
    """What a training run's TensorBoard files and train.log say about its course."""

    val_miou: dict[int, float] = field(default_factory=dict)  # iteration -> mIoU
    last_iteration: int | None = None
    wall_time_s: float | None = None


@dataclass
class Events:
    """The scalars of TensorBoard event files, as TensorBoard's own reader loads them."""

    scalars: dict[str, list[Any]]  # tag -> ScalarEvent(wall_time, step, value), in file order
    first_time: float | None  # the writer's first event (before the first scalar)


def read_events(path: Path) -> Events:
    """Every scalar of the event file, or of all event files in the folder,
    ``path``; a truncated file (a killed run) gives what it holds. The one
    TensorBoard reader of :func:`read_tensorboard` and tools/plot.py."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    # 0 keeps every scalar (the default samples 10,000 per tag); the
    # prediction images are not needed.
    acc = ea.EventAccumulator(
        str(path), size_guidance={ea.SCALARS: 0, ea.IMAGES: 1, ea.HISTOGRAMS: 1, ea.TENSORS: 1}
    )
    try:
        acc.Reload()
    except Exception:  # a truncated file of a killed run: use what loaded
        pass
    scalars = {tag: list(acc.Scalars(tag)) for tag in acc.Tags().get("scalars", [])}
    try:
        first_time = acc.FirstEventTimestamp()
    except ValueError:
        first_time = None
    return Events(scalars, first_time)


def read_history(run_dir: Path) -> _Curve | None:
    """The course of the training run in ``run_dir``; None when nothing of it
    was recorded. Validations from metrics.jsonl where it exists (full
    precision), the rest from the event files, else train.log."""
    curve = read_tensorboard(run_dir / "tb") or read_train_log(run_dir / "train.log")
    logged = read_metrics_log(run_dir / names.METRICS_LOG)
    if logged:
        curve = curve or _Curve()
        curve.val_miou = logged
        curve.last_iteration = max(curve.last_iteration or 0, max(logged))
    return curve


def read_metrics_log(path: Path) -> dict[int, float]:
    """``{iteration: mIoU}`` from metrics.jsonl (empty if there is none). A
    resumed run validates some iterations again: the later line wins. A line
    a kill cut short is skipped."""
    if not path.is_file():
        return {}
    out: dict[int, float] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            out[int(entry["iteration"])] = float(entry["mIoU"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def read_tensorboard(tb_dir: Path) -> _Curve | None:
    """Validation mIoU per iteration, the last iteration logged and the wall
    time from the event files in ``tb_dir``; None when there are none.

    Each start of a run (a resume too) writes a new event file. The wall time
    is the sum over files of first to last event, so it leaves out the time
    between a kill and the resume (and the model set-up before each start).
    A resume from an earlier checkpoint repeats the iterations after it: the
    steps at or after the first step of a later file are replaced by that file's.
    """
    files = sorted(tb_dir.glob("events.out.tfevents.*"), key=_event_file_order)
    if not files:
        return None
    curve = _Curve()
    total_time = 0.0
    for file in files:
        loaded = read_events(file)
        events = [e for tag_events in loaded.scalars.values() for e in tag_events]
        if not events:
            continue
        first_step = min(e.step for e in events)
        curve.val_miou = {s: v for s, v in curve.val_miou.items() if s < first_step}
        curve.val_miou.update(
            {int(e.step): float(e.value) for e in loaded.scalars.get(names.VAL_MIOU, [])}
        )
        curve.last_iteration = max(e.step for e in events)
        # The writer's first event is written before the first iteration.
        start = loaded.first_time
        if start is None:
            start = min(e.wall_time for e in events)
        total_time += max(e.wall_time for e in events) - start
    if curve.last_iteration is None:
        return None
    curve.wall_time_s = total_time
    return curve


def read_train_log(log_file: Path) -> _Curve | None:
    """The same as :func:`read_tensorboard` from train.log, for a run without
    event files: mIoU there has 2 decimals (a percentage), and the wall time is
    first to last line, gaps between a kill and a resume included."""
    if not log_file.is_file():
        return None
    curve = _Curve()
    times: list[datetime] = []
    pending: int | None = None  # a validation whose table is being read
    for line in log_file.read_text(errors="replace").splitlines():
        if m := _LOG_TIME.match(line):
            times.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f"))
        if m := _LOG_ITER.search(line):
            curve.last_iteration = max(curve.last_iteration or 0, int(m.group(1)))
        if m := _LOG_VAL.search(line):
            pending = int(m.group(1))
        elif pending is not None and (m := _LOG_MIOU.match(line)):
            curve.val_miou[pending] = float(m.group(1)) / 100
            curve.last_iteration = max(curve.last_iteration or 0, pending)
            pending = None
    if len(times) >= 2:
        curve.wall_time_s = (times[-1] - times[0]).total_seconds()
    return curve


def _event_file_order(path: Path) -> tuple:
    """events.out.tfevents.<unix time>.<host>...: oldest first."""
    parts = path.name.split(".")
    stamp = parts[3] if len(parts) > 3 else ""
    return (int(stamp) if stamp.isdigit() else 0, path.name)
