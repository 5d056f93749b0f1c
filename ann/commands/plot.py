"""Training curves of several runs, overlaid: what ``tools/plot.py`` draws.

The scalars come from each run's TensorBoard event files (``<run>/tb``, as
:class:`~ann.engine.trainer.Trainer` writes them: ``train/loss``,
``train/loss_main``, ``train/loss_aux``, ``train/lr``, ``val/mIoU`` ...),
read with :func:`ann.summary.history.read_events` (TensorBoard's own reader).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ann.errors import OneLineArgumentParser, UserError, exit_2_on_user_error
from ann.summary.history import read_events
from ann.visualization.figures import new_figure, save_figure

# Loss terms, learning rate, validation mIoU: fnmatch patterns over the tags.
DEFAULT_KEYS = ("train/loss*", "train/lr", "val/mIoU")

Series = tuple[np.ndarray, np.ndarray]  # (N,) int iterations, (N,) float values


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


def curves_figure(runs: Mapping[str, Mapping[str, Series]], keys: Sequence[str]) -> Figure:
    """One subplot per key (its title the tag), one line per run that has it,
    x = iteration, a shared legend of run names above the subplots.

    Args:
        runs: ``{run name: {tag: ((N,) iterations, (N,) values)}}``.
        keys: the tags to draw, one subplot each.
    """
    cols = 2 if len(keys) == 4 else min(3, len(keys))  # 2×2 rather than 3 + 1
    rows = math.ceil(len(keys) / cols)
    fig = new_figure(4.4 * cols, 3.0 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True).ravel()
    cycle = [f"C{i % 10}" for i in range(len(runs))]  # a run keeps its colour everywhere
    handles = {}
    for ax, key in zip(axes, keys, strict=False):
        for colour, (name, scalars) in zip(cycle, runs.items(), strict=True):
            if key not in scalars:
                continue
            steps, values = scalars[key]
            # Markers where points are few (validations), so a lone point shows.
            (line,) = ax.plot(
                steps,
                values,
                color=colour,
                label=name,
                linewidth=1.3,
                marker="o" if len(steps) <= 30 else None,
                markersize=3.5,
            )
            handles.setdefault(name, line)
        ax.set_title(key, fontsize=10)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if key.endswith("/lr"):
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        elif key.startswith("val"):  # mIoU, mAcc, aAcc, val_IoU/*: fractions
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    for ax in axes[len(keys) :]:
        ax.remove()  # an empty cell of the grid would read as a missing curve
    for i, ax in enumerate(axes[: len(keys)]):
        # The lowest subplot of each column (not always in the last row) is
        # the one that shows the shared iteration axis.
        if i + cols >= len(keys):
            ax.set_xlabel("iteration", fontsize=9)
            ax.tick_params(labelbottom=True)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside upper center",
        ncols=min(len(handles), 4),
        fontsize=9,
        frameon=False,
    )
    return fig


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
