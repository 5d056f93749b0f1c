"""Cityscapes in its official layout, labelIds mapped to the 19 trainIds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import labels as CS_LABELS

from ann.data.base import SegmentationDataset, require_dir
from ann.data.folder import pair_samples
from ann.errors import DataError

_TRAIN_LABELS = sorted(
    (lb for lb in CS_LABELS if 0 <= lb.trainId < 255 and not lb.ignoreInEval),
    key=lambda lb: lb.trainId,
)
CITYSCAPES_CLASSES = tuple(lb.name for lb in _TRAIN_LABELS)
CITYSCAPES_PALETTE = tuple(tuple(lb.color) for lb in _TRAIN_LABELS)


def label_id_to_train_id_lut(ignore_index: int = 255) -> np.ndarray:
    """(256,) uint8 lookup table labelId -> trainId (ignore for the rest)."""
    lut = np.full(256, ignore_index, dtype=np.uint8)
    for lb in CS_LABELS:
        if lb.id >= 0 and 0 <= lb.trainId < 255 and not lb.ignoreInEval:
            lut[lb.id] = lb.trainId
    return lut


def train_id_to_label_id_lut() -> np.ndarray:
    """(256,) uint8 lookup table trainId -> labelId (0, "unlabeled", for the rest)."""
    lut = np.zeros(256, dtype=np.uint8)
    for lb in _TRAIN_LABELS:
        lut[lb.trainId] = lb.id
    return lut


class CityscapesDataset(SegmentationDataset):
    """``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with
    ``gtFine/{split}/{city}/*_gtFine_labelTrainIds.png`` when present (written by
    scripts/prepare_cityscapes.py), else ``*_gtFine_labelIds.png`` mapped on the
    fly. The test split has no public labels: its masks are all ignore.
    """

    classes = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE

    def __init__(
        self,
        root: str | Path,
        split: str,
        transforms: Callable | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(transforms, ignore_index)
        self.root = Path(root)
        self.split = split
        image_dir = self.root / "leftImg8bit" / split
        label_dir = self.root / "gtFine" / split
        layout = (
            f"the Cityscapes layout leftImg8bit/{split}/CITY/CITY_SEQ_FRAME_leftImg8bit.png "
            f"with gtFine/{split}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png"
        )
        require_dir(self.root, layout)
        require_dir(image_dir, layout)
        images = {
            str(p.relative_to(image_dir))[: -len("_leftImg8bit.png")]: p
            for p in sorted(image_dir.rglob("*_leftImg8bit.png"))
        }
        if not images:
            raise DataError(f"{image_dir}: no images found (expected {layout})")
        if split == "test":
            # The test split has no public labels: masks are all ignore.
            self.samples = [(images[k], None) for k in sorted(images)]
            self.mapped = True
        else:
            require_dir(label_dir, layout)
            train_ids = {
                str(p.relative_to(label_dir))[: -len("_gtFine_labelTrainIds.png")]: p
                for p in sorted(label_dir.rglob("*_gtFine_labelTrainIds.png"))
            }
            label_ids = {
                str(p.relative_to(label_dir))[: -len("_gtFine_labelIds.png")]: p
                for p in sorted(label_dir.rglob("*_gtFine_labelIds.png"))
            }
            # Prepared trainId files are used only if every image has one.
            self.mapped = bool(train_ids) and set(train_ids) >= set(images)
            labels = (
                {k: train_ids[k] for k in images if k in train_ids} if self.mapped else label_ids
            )
            self.samples = pair_samples(images, labels, image_dir, label_dir, layout)
        self._lut = label_id_to_train_id_lut(ignore_index)

    def sample_name(self, index: int) -> str:
        return self.samples[index][0].name[: -len("_leftImg8bit.png")]

    def map_label(self, label: np.ndarray) -> np.ndarray:
        """(H, W) labelIds (or trainIds when prepared) -> (H, W) trainIds."""
        return label if self.mapped else self._lut[label]
