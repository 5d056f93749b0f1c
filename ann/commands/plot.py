"""Training curves of several runs, overlaid: what ``tools/plot.py`` draws.

The scalars come from each run's TensorBoard event files (``<run>/tb``, as
:class:`~ann.engine.trainer.Trainer` writes them: ``train/loss``,
``train/loss_main``, ``train/loss_aux``, ``train/lr``, ``val/mIoU`` ...),
read with :func:`ann.summary.history.read_events` (TensorBoard's own reader).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ann import metric_names as names
from ann.errors import OneLineArgumentParser, UserError, exit_2_on_user_error
from ann.summary.history import read_events
from ann.visualization.curves import Series, curves_figure
from ann.visualization.figures import save_figure

# Loss terms, learning rate, validation mIoU: fnmatch patterns over the tags.
DEFAULT_KEYS = (names.TRAIN_LOSS + "*", names.TRAIN_LR, names.VAL_MIOU)


class RunError(UserError):
    """A run directory is missing, holds no event files or lacks the requested curves."""


def event_dir(run: str | Path) -> Path:
    """The folder holding ``run``'s event files: ``run/tb``, or ``run`` itself
    when the event files lie directly in it. Raises :class:`RunError`."""
    run = Path(run)
    if not run.is_dir():
        what = "does not exist" if not run.exists() else "is not a folder"
        raise RunError(f"{run} {what} (expected a run directory with TensorBoard files in tb/)")
    for folder in (run / "tb", run):
        if folder.is_dir() and any(folder.glob("events.out.tfevents.*")):
            return folder
    raise RunError(
        f"{run}: no TensorBoard event files (expected {run / 'tb'}/events.out.tfevents.*, "
        "as tools/train.py writes them)"
    )


def read_scalars(run: str | Path) -> dict[str, Series]:
    """Every scalar of ``run``'s event files: ``{tag: (iterations, values)}``.

    Iterations are sorted; a step written twice (a run resumed from an
    earlier checkpoint repeats the steps after it) keeps its last value.
    """
    scalars: dict[str, Series] = {}
    for tag, events in read_events(event_dir(run)).scalars.items():
        by_step = {int(e.step): float(e.value) for e in events}
        steps = np.array(sorted(by_step), dtype=np.int64)
        scalars[tag] = (steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    return scalars


def select_keys(patterns: Sequence[str], available: Sequence[str]) -> list[str]:
    """The tags of ``available`` that ``patterns`` (fnmatch, e.g. ``train/loss*``)
    name, in pattern order then tag order; raises :class:`RunError` if none does."""
    keys: list[str] = []
    for pattern in patterns:
        for tag in sorted(available):
            if fnmatch.fnmatchcase(tag, pattern) and tag not in keys:
                keys.append(tag)
    if not keys:
        raise RunError(
            f"--keys {' '.join(patterns)}: no such scalar in the runs "
            f"(they have: {', '.join(sorted(available))})"
        )
    return keys


def run_names(runs: Sequence[str | Path]) -> list[str]:
    """Legend labels: each run's folder name, or the path as given where two
    runs share a folder name."""
    names = [Path(r).name or str(r) for r in runs]
    if len(set(names)) < len(names):
        names = [str(r) for r in runs]
    return names


def plot_runs(
    runs: Sequence[str | Path], out: str | Path, keys: Sequence[str] = DEFAULT_KEYS
) -> Path:
    """Reads ``runs``' scalars, draws ``keys`` (fnmatch patterns) and writes the PNG ``out``."""
    scalars = {name: read_scalars(run) for name, run in zip(run_names(runs), runs, strict=True)}
    available = sorted({tag for tags in scalars.values() for tag in tags})
    if not available:
        raise RunError(f"{', '.join(map(str, runs))}: the event files hold no scalars")
    selected = select_keys(keys, available)
    for tags, run in zip(scalars.values(), runs, strict=True):
        # A run with no line at all (e.g. an eval folder, whose tb/ holds only
        # images) would silently vanish from the legend.
        if not set(selected) & set(tags):
            have = ", ".join(sorted(tags)) or "no scalars"
            raise RunError(f"{run}: none of {', '.join(selected)} in its event files ({have})")
    return save_figure(curves_figure(scalars, selected), out)


@exit_2_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """``python tools/plot.py RUN [RUN ...] [--out FILE.png] [--keys PATTERN ...]``;
    returns the exit status (2 for a user error, printed as one line)."""
    parser = OneLineArgumentParser(
        prog="tools/plot.py",
        description="Overlay the training curves (loss terms, lr, val mIoU) of runs.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (outputs/NAME)")
    parser.add_argument("--out", default="plot.png", help="PNG to write (default: ./plot.png)")
    parser.add_argument(
        "--keys",
        nargs="+",
        default=list(DEFAULT_KEYS),
        metavar="TAG",
        help="scalar tags or fnmatch patterns, one subplot each "
        f"(default: {' '.join(DEFAULT_KEYS)}; e.g. 'val_IoU/*' time/iter)",
    )
    args = parser.parse_args(argv)
    path = plot_runs(args.runs, args.out, args.keys)
    print(path)
    return 0
