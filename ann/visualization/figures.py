"""Evaluation figures: the row-normalised confusion matrix and per-class IoU bars.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas
rather than through pyplot: pyplot keeps every figure in a global registry
(and may pick an interactive backend), which a library called from training
or evaluation code must not touch. Sizes and fonts scale with the number of
classes, so that 19 (Cityscapes) and 150 (ADE20K) classes both stay legible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from PIL import Image

if TYPE_CHECKING:  # not imported at run time: tools/plot.py starts 1.5 s faster without torch
    import torch
    from torch.utils.tensorboard import SummaryWriter

CONFUSION_PNG = "confusion_matrix.png"
PER_CLASS_IOU_PNG = "per_class_iou.png"
# Classes up to which every confusion-matrix cell carries its percentage as text
# (beyond, a cell is too small for it).
_ANNOTATE_CELLS_UP_TO = 30


def new_figure(width: float, height: float, dpi: float = 100.0) -> Figure:
    """A figure of ``width`` × ``height`` inches at ``dpi`` on an Agg canvas,
    with constrained layout so that long class names are not cut off."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Writes ``fig`` as a PNG at ``path`` (parents created) and releases it.

    Constrained layout fits the axes' labels; ``bbox_inches="tight"`` also
    keeps a title wider than the figure from being cut off.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi="figure", facecolor="white", bbox_inches="tight", pad_inches=0.1)
    fig.clear()  # no pyplot registry to close it from: drop the artists now
    return path


def _font_size(count: int) -> float:
    """Tick-label font size (points) for ``count`` labels on one axis, sized
    for the 0.15-inch (11-point) rows the figures give each class."""
    return float(np.clip(250.0 / max(count, 1), 6.0, 9.0))


def row_normalize(conf: torch.Tensor | np.ndarray) -> np.ndarray:
    """(K, K) confusion counts, rows = ground truth -> (K, K) float64 where each
    row sums to 1: the fraction of a class's pixels predicted as each class.
    A row without ground-truth pixels is NaN (drawn grey), not a row of zeros
    that would read as "never predicted correctly"."""
    if hasattr(conf, "detach"):  # a torch tensor, possibly on an accelerator
        conf = conf.detach().cpu().numpy()
    counts = np.asarray(conf, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"expected a square (K, K) confusion matrix, got shape {counts.shape}")
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / totals, np.nan)


def confusion_figure(
    conf: torch.Tensor | np.ndarray, class_names: Sequence[str], title: str
) -> Figure:
    """The row-normalised confusion matrix as a heat map.

    Args:
        conf: (K, K) pixel counts, rows = ground truth, columns = prediction.
        class_names: K names, the tick labels of both axes.
        title: the figure title (e.g. dataset/split and mIoU).

    Returns:
        The figure; its one image (``fig.axes[0].images[0].get_array()``)
        holds exactly :func:`row_normalize` of ``conf``, (K, K), as a masked
        array whose NaN rows are masked.
    """
    matrix = row_normalize(conf)
    k = matrix.shape[0]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a {k}×{k} confusion matrix")
    # 0.15 inch per class (a 6-point label fits), never smaller than 7 inches;
    # many classes get a finer raster so that those labels stay crisp.
    side = max(7.0, 0.15 * k + 3.0)
    fig = new_figure(side + 1.0, side, dpi=100.0 if k <= 60 else 120.0)
    ax = fig.add_subplot()
    cmap = colormaps["Blues"].with_extremes(bad="#c8c8c8")  # grey: rows without ground truth
    # A square-root scale: with many classes most mistakes are a few percent
    # of a row, invisible on a linear scale next to a diagonal near 1.
    image = ax.imshow(
        matrix,  # NaN rows are masked by imshow and drawn in the "bad" colour
        cmap=cmap,
        norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0),
        interpolation="nearest",
        aspect="equal",
    )
    no_gt = np.isnan(matrix[:, 0])
    _confusion_axes(ax, class_names, no_gt)
    if k <= _ANNOTATE_CELLS_UP_TO:
        _annotate_cells(ax, matrix)
    else:  # names on all four sides: a cell far from the left and bottom stays traceable
        ax.tick_params(top=True, labeltop=True, right=True, labelright=True)
    _confusion_colorbar(fig, image, ax, side)
    note = "\ngrey rows: class absent from the ground truth" if no_gt.any() else ""
    ax.set_title(
        f"{title}\nconfusion matrix: each ground-truth row sums to 100%{note}",
        fontsize=12 if k <= 60 else 18,
    )
    return fig


def _confusion_axes(ax: Any, class_names: Sequence[str], no_gt: np.ndarray) -> None:
    """Names both axes of the K × K matrix, class names as tick labels (grey
    for the ``no_gt`` rows, a (K,) bool array), with white lines between cells."""
    k = len(class_names)
    font = _font_size(k)
    ax.set_xticks(np.arange(k), labels=list(class_names), rotation=90, fontsize=font)
    ax.set_yticks(np.arange(k), labels=list(class_names), fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    # Thin gridlines between cells help follow a row across 150 columns.
    ax.set_xticks(np.arange(k + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(k + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=0.3 if k > 50 else 0.6)
    ax.tick_params(which="minor", length=0)
    for label, missing in zip(ax.get_yticklabels(), no_gt, strict=True):
        if missing:
            label.set_color("grey")


def _confusion_colorbar(fig: Figure, image: Any, ax: Any, side: float) -> None:
    """The colour bar of the heat map ``image``, in percent, sized for a
    figure ``side`` inches high."""
    bar = fig.colorbar(image, ax=ax, shrink=min(1.0, 8.0 / side + 0.3), pad=0.02)
    bar.set_ticks([0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0])
    bar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    bar.set_label("share of the ground-truth row (square-root scale)")


def _annotate_cells(ax: Any, matrix: np.ndarray) -> None:
    """Writes each cell's percentage (>= 0.5 %) into it, white on dark cells."""
    for i, j in zip(*np.nonzero(np.nan_to_num(matrix) >= 0.005), strict=True):
        value = matrix[i, j]
        ax.text(
            j,
            i,
            f"{100 * value:.0f}",
            ha="center",
            va="center",
            fontsize=7.5 if len(matrix) >= 15 else 10.0,
            color="white" if value > 0.35 else "black",
        )


def per_class_iou_figure(
    per_class: Mapping[str, Mapping[str, float | None]], mean_iou: float, title: str
) -> Figure:
    """Horizontal bars of per-class IoU, in class order from the top.

    Args:
        per_class: metrics.json's ``per_class``: K entries ``{name: {"IoU": float | None}}``
            (None: the class is absent from both ground truth and prediction).
        mean_iou: the mIoU (a fraction), drawn as a dashed vertical line.
        title: the figure title.

    Returns:
        The figure; its first axes holds one bar per class, in order, whose
        width is the IoU as a fraction, NaN for an absent class (no bar,
        marked "absent" instead).
    """
    names = list(per_class)
    k = len(names)
    values = np.array(
        [np.nan if per_class[n]["IoU"] is None else float(per_class[n]["IoU"]) for n in names]
    )
    # Rows are 0.17 inch (12 points) high whatever the count: 7.5-point names fit.
    font = 9.0 if k <= 30 else 7.5
    fig = new_figure(7.5, max(3.5, 0.17 * k + 1.6))
    ax = fig.add_subplot()
    ax.barh(np.arange(k), values, height=0.75, color="#4c72b0")
    ax.axvline(
        mean_iou,
        color="#c44e52",
        linestyle="--",
        linewidth=1.2,
        label=f"mIoU {100 * mean_iou:.2f}%",
    )
    _label_bars(ax, values, font - 0.5)
    _iou_axes(ax, names, values, font)
    # Below the axes, where no bar can hide it.
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    ax.set_title(f"{title}\nper-class IoU")
    return fig


def _label_bars(ax: Any, values: np.ndarray, fontsize: float) -> None:
    """Writes each bar's IoU in percent right of it; a NaN (absent class) row
    says "absent" instead. ``values``: (K,) IoU fractions, row i = class i."""
    for row, value in enumerate(values):
        if np.isnan(value):
            ax.text(
                0.005,
                row,
                "absent (no GT, no prediction)",
                va="center",
                fontsize=fontsize,
                color="grey",
                style="italic",
            )
        else:
            # A white backing keeps the number legible where the mIoU line crosses it.
            ax.text(
                value + 0.005,
                row,
                f"{100 * value:.1f}",
                va="center",
                fontsize=fontsize,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.3, "alpha": 0.8},
            )


def _iou_axes(ax: Any, names: Sequence[str], values: np.ndarray, font: float) -> None:
    """Class names as row labels (grey where ``values``, (K,), is NaN), the
    first class at the top, and an IoU scale from 0 to 100 %."""
    k = len(names)
    ax.set_yticks(np.arange(k), labels=names, fontsize=font)
    for label, value in zip(ax.get_yticklabels(), values, strict=True):
        if np.isnan(value):
            label.set_color("grey")
    ax.set_ylim(k - 0.5, -0.5)  # the first class at the top, as in the tables
    ax.set_xlim(0.0, 1.08)  # room for the value text right of a bar near 100 %
    ax.set_xticks(np.linspace(0.0, 1.0, 11))
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_xlabel("IoU")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if k > 40:  # a tall figure: the scale at the top too
        ax.tick_params(axis="x", top=True, labeltop=True)


def write_eval_plots(
    conf: torch.Tensor | np.ndarray,
    metrics: Mapping[str, Any],
    out_dir: str | Path,
    name: str,
    writer: SummaryWriter | None = None,
    step: int = 0,
) -> list[Path]:
    """Writes confusion_matrix.png and per_class_iou.png into ``out_dir``.

    Args:
        conf: the evaluator's (K, K) confusion matrix, rows = ground truth.
        metrics: the metrics.json dict of the same evaluation.
        out_dir: where the PNGs go (next to metrics.json).
        name: what was evaluated, e.g. ``"cityscapes/val"``, for the titles.
        writer: optional TensorBoard ``SummaryWriter``: the same two images
            go there as ``eval/confusion_matrix`` and ``eval/per_class_iou``.
        step: the TensorBoard step (the checkpoint's iteration).

    Returns:
        The two PNG paths.
    """
    out_dir = Path(out_dir)
    title = f"{name}  mIoU {100 * float(metrics['mIoU']):.2f}%"
    paths = [
        save_figure(
            confusion_figure(conf, list(metrics["per_class"]), title), out_dir / CONFUSION_PNG
        ),
        save_figure(
            per_class_iou_figure(metrics["per_class"], float(metrics["mIoU"]), title),
            out_dir / PER_CLASS_IOU_PNG,
        ),
    ]
    if writer is not None:
        # The PNGs themselves, so TensorBoard shows exactly the files.
        for path in paths:
            with Image.open(path) as png:
                pixels = np.asarray(png.convert("RGB"))
            writer.add_image(f"eval/{path.stem}", pixels, step, dataformats="HWC")
    return paths
