"""Training curves of several runs, overlaid (tools/plot.py draws them from the
runs' TensorBoard scalars)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from ann import metric_names as names
from ann.visualization.figures import new_figure

Series = tuple[np.ndarray, np.ndarray]  # (N,) int iterations, (N,) float values


def _style_axis(ax: Any, key: str) -> None:
    """Title, grid and integer iteration ticks; lr in scientific notation,
    validation metrics (fractions) as percentages."""
    ax.set_title(key, fontsize=10)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if key == names.TRAIN_LR:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    elif key.startswith((names.VAL, names.VAL_CLASS_IOU)):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))


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
        _style_axis(ax, key)
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


__all__ = ["Series", "curves_figure"]
