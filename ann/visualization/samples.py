"""Figures of dataset samples as the model is fed them (tools/browse_dataset.py):
a mask over its image with the ignore pixels hatched, and the overview grid
of all browsed samples with a class legend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ann.visualization.figures import new_figure
from ann.visualization.masks import blend, colorize


def overlay(
    rgb: np.ndarray,
    mask: np.ndarray,
    palette: Sequence[Sequence[int]],
    ignore_index: int = 255,
    alpha: float = 0.5,
) -> np.ndarray:
    """The mask's palette colours blended over the image.

    Args:
        rgb: (H, W, 3) uint8 image.
        mask: (H, W) class indices, ``ignore_index`` where unlabelled.
        palette: K RGB colours (the dataset's).
        alpha: the colours' weight in the blend.

    Returns:
        (H, W, 3) uint8. Ignore pixels are black-and-white diagonal stripes,
        which no palette colour can be mistaken for (colorize paints them
        plain white, and white or near-white is a class colour in some palettes).
    """
    out = blend(rgb, colorize(mask, palette, ignore_index), alpha)
    # Stripes ~1/64 of the image wide: still visible once a large image is shrunk.
    stripe = max(4, round(max(mask.shape) / 64))
    yy, xx = np.indices(mask.shape)
    stripes = np.where(((yy + xx) // stripe) % 2 == 0, 255.0, 0.0)[..., None]
    return np.where((mask == ignore_index)[..., None], stripes, out).astype(np.uint8)


def _legend(dataset: object, present: set[int]) -> list[Patch]:
    """A patch per class in ``present`` (its palette colour), and the ignore
    hatching where the ignore index occurs."""
    handles = [
        Patch(
            facecolor=np.asarray(dataset.palette[k]) / 255.0,
            edgecolor="black",
            linewidth=0.5,
            label=dataset.classes[k],
        )
        for k in sorted(present)
        if k < len(dataset.classes)
    ]
    if dataset.ignore_index in present:
        handles.append(
            Patch(
                facecolor="white",
                edgecolor="black",
                hatch="////",
                linewidth=0.5,
                label=f"ignore ({dataset.ignore_index})",
            )
        )
    return handles


def overview_figure(
    panels: dict[str, list[np.ndarray]], names: Sequence[str], dataset: object, present: set[int]
) -> Figure:
    """All panels in a grid, one row per sample, one column per pipeline, and a
    legend of the classes that occur (plus the ignore hatching).

    Args:
        panels: ``{pipeline: [(H, 2·W, 3) uint8 image | overlay, ...]}``, N each.
        names: the N sample names (row labels).
        dataset: supplies ``classes``, ``palette`` and ``ignore_index``.
        present: class indices (and maybe the ignore index) found in the masks.
    """
    columns = list(panels)
    rows = len(names)
    fig = new_figure(3.6 * len(columns), 1.9 * rows + 1.0)
    axes = fig.subplots(rows, len(columns), squeeze=False)
    titles = {"train": "train pipeline (augmented)", "val": "eval pipeline"}
    for col, name in enumerate(columns):
        for row in range(rows):
            ax = axes[row, col]
            ax.imshow(panels[name][row], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{titles.get(name, name)}: image | mask", fontsize=9)
            if col == 0:
                ax.set_ylabel(names[row], fontsize=8)
    handles = _legend(dataset, present)
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 6),
        fontsize=8,
        frameon=False,
    )
    return fig


__all__ = ["overlay", "overview_figure"]
