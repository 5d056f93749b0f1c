"""Writing predicted masks: index PNGs, Cityscapes labelIds, palette colours
and side-by-side overlays (drawn by :func:`ann.visualization.masks.overlay_panel`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ann.errors import ConfigError
from ann.evaluation.cityscapes_export import result_path, to_label_ids
from ann.evaluation.options import FORMATS
from ann.visualization.masks import overlay_panel


def save_index_png(
    path: Path, mask: np.ndarray, palette: Sequence[Sequence[int]] | None = None
) -> None:
    """Writes (H, W) class indices as a single-channel PNG: mode "L", or mode
    "P" with ``palette`` (its pixel values are still the indices, so the file
    is both a coloured picture and a valid label)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(mask.astype(np.uint8), mode="L")
    if palette is not None:
        img = img.convert("P")
        flat = np.zeros((256, 3), dtype=np.uint8)
        flat[:] = 255  # unused indices (incl. ignore) white, as colorize() does
        flat[: len(palette)] = np.asarray(palette, dtype=np.uint8)
        img.putpalette(flat.reshape(-1).tolist())
    img.save(path)


class PredictionWriter:
    """Writes one predicted mask per image under ``out_dir`` in ``fmt``:

    - ``trainid``: ``{name}.png``, single-channel class indices;
    - ``cityscapes``: ``{city}/{city}_{seq}_{frame}_leftImg8bit.png`` labelIds,
      ready for the Cityscapes benchmark (see :mod:`ann.evaluation.cityscapes_export`);
    - ``color``: ``masks/{name}.png`` palette PNGs (pixel values = class indices)
      and ``overlays/{name}.png``, image | ground truth | prediction overlay.
    """

    def __init__(
        self,
        fmt: str,
        out_dir: str | Path,
        classes: Sequence[str],
        palette: Sequence[Sequence[int]],
        ignore_index: int = 255,
        alpha: float = 0.5,
    ) -> None:
        # evaluator.save_predictions is checked where the Evaluator is built.
        assert fmt in FORMATS, fmt
        if fmt == "cityscapes":
            from ann.data.cityscapes import CITYSCAPES_CLASSES

            if tuple(classes) != tuple(CITYSCAPES_CLASSES):
                raise ConfigError(
                    "evaluator.save_predictions=cityscapes needs the 19 Cityscapes trainId "
                    f"classes; this dataset has {len(classes)} other classes (use trainid or color)"
                )
        self.fmt = fmt
        self.out_dir = Path(out_dir)
        self.palette = palette
        self.ignore_index = ignore_index
        self.alpha = alpha

    def write(
        self,
        name: str,
        pred: np.ndarray,
        image: np.ndarray | None = None,
        gt: np.ndarray | None = None,
    ) -> Path:
        """Writes ``pred`` (H, W) class indices for sample ``name``; ``image``
        (h, w, 3) uint8 and ``gt`` (H, W) feed the colour overlay. Returns the
        mask's path."""
        if self.fmt == "trainid":
            path = self.out_dir / f"{name}.png"
            save_index_png(path, pred)
        elif self.fmt == "cityscapes":
            path = self.out_dir / result_path(name)
            save_index_png(path, to_label_ids(pred))
        else:
            path = self.out_dir / "masks" / f"{name}.png"
            save_index_png(path, pred, self.palette)
            if image is not None:
                panel = overlay_panel(image, pred, self.palette, gt, self.ignore_index, self.alpha)
                over = self.out_dir / "overlays" / f"{name}.png"
                over.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(panel).save(over)
        return path
