"""PASCAL Context (VOC 2010 images, labels of the PASCAL in Detail release):
59 classes (background ignored) or 60 (background counted).

scripts/prepare_pascal_context.py writes the labels in mmsegmentation's layout:
``VOC2010/SegmentationClassContext/NAME.png`` (0 background, 1..59 the classes
in :data:`CONTEXT_CLASSES` order) and ``VOC2010/ImageSets/SegmentationContext/
{train,val}.txt``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ann.data import rle
from ann.data.ade20k import reduce_zero_label_lut
from ann.data.base import SegmentationDataset
from ann.data.voc import find_voc_root, listed_samples

# A data table, kept several values a line: ruff would give each its own line.
# fmt: off
# Category ids of the 459 labels (trainval_merged.json) that form the standard
# 59-class benchmark, with background 0 — the list of mmsegmentation's and the
# authors' converters. Both sort it, so class k is the k-th smallest id; the
# 459 labels are numbered alphabetically, hence the alphabetical class names.
CONTEXT_LABEL_IDS = (
    0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33,
    162, 420, 454, 295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68,
    326, 72, 458, 34, 207, 80, 355, 85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189, 368,
    113, 115,
)
# The 59 classes and colours as mmsegmentation lists them (PascalContextDataset59).
CONTEXT_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book",
    "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth",
    "computer", "cow", "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food",
    "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves",
    "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck",
    "tvmonitor", "wall", "water", "window", "wood",
)
CONTEXT_PALETTE = (
    (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
    (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255),
    (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82),
    (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3), (0, 102, 200),
    (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71), (255, 9, 224),
    (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255), (8, 255, 214),
    (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255),
    (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8),
    (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255),
    (160, 150, 20), (0, 163, 255), (140, 140, 140), (250, 10, 15), (20, 255, 0),
    (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0), (0, 0, 255),
    (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
)
# fmt: on
# mmsegmentation's PascalContextDataset: background first, in its own colour.
CONTEXT60_CLASSES = ("background", *CONTEXT_CLASSES)
CONTEXT60_PALETTE = ((120, 120, 120), *CONTEXT_PALETTE)

LABEL_DIR = "SegmentationClassContext"
SPLIT_DIR = "ImageSets/SegmentationContext"
_LAYOUT = (
    "VOCdevkit/VOC2010 with JPEGImages/NAME.jpg, SegmentationClassContext/NAME.png and "
    "ImageSets/SegmentationContext/{split}.txt (run scripts/prepare_pascal_context.py)"
)


def label_id_lut(max_id: int = 459) -> np.ndarray:
    """(max_id + 1,) uint8: category id of the 459 labels -> 0..59; ids
    outside the 59 classes -> 0 (background), as the benchmark defines them."""
    lut = np.zeros(max(max_id, max(CONTEXT_LABEL_IDS)) + 1, dtype=np.uint8)
    for index, label_id in enumerate(sorted(CONTEXT_LABEL_IDS)):
        lut[label_id] = index
    return lut


def context_label(
    height: int, width: int, annotations: Iterable[tuple[int, Mapping[str, Any]]]
) -> tuple[np.ndarray, set[int]]:
    """The (H, W) uint8 label 0..59 of one image and the category ids outside the 59.

    ``annotations`` are (category_id, RLE) in the JSON's order; like the
    Detail API's class mask, each is painted over the ones before it with its
    category id, then ids map through :func:`label_id_lut`. Raises
    :class:`RLEError` for a malformed or wrongly sized RLE.
    """
    ids = np.zeros((height, width), dtype=np.int64)
    for category_id, segmentation in annotations:
        mask = rle.decode(segmentation)
        if mask.shape != (height, width):
            raise rle.RLEError(f"mask size {list(mask.shape)} differs from the image's")
        ids[mask] = category_id
    painted = {int(v) for v in np.unique(ids)}
    lut = label_id_lut(max(painted))
    return lut[ids], {v for v in painted if v not in CONTEXT_LABEL_IDS}


class PascalContextDataset(SegmentationDataset):
    """``JPEGImages/NAME.jpg`` with ``SegmentationClassContext/NAME.png`` for
    the names in ``ImageSets/SegmentationContext/{split}.txt``.

    ``root`` is VOCdevkit/VOC2010 (or a folder above it). Labels store 0 for
    background and k for class k - 1 of :data:`CONTEXT_CLASSES`; the standard
    59-class protocol (``reduce_zero_label``) makes 0 ignore and k class k - 1.
    :class:`PascalContext60Dataset` counts background as class 0.
    """

    classes = CONTEXT_CLASSES
    palette = CONTEXT_PALETTE
    reduce_zero_label = True

    def __init__(
        self,
        root: str | Path,
        split: str,
        transforms: Callable | None = None,
        ignore_index: int = 255,
        label_dir: str = LABEL_DIR,
    ) -> None:
        super().__init__(transforms, ignore_index)
        self.root = find_voc_root(Path(root), "VOC2010")
        self.split = split
        split_file = self.root / SPLIT_DIR / f"{split}.txt"
        self.samples = listed_samples(self.root, label_dir, split_file, _LAYOUT)
        self._lut = reduce_zero_label_lut(ignore_index) if self.reduce_zero_label else None

    def map_label(self, label: np.ndarray) -> np.ndarray:
        """(H, W) stored values 0..59 -> (H, W) train ids."""
        return label if self._lut is None else self._lut[label]


class PascalContext60Dataset(PascalContextDataset):
    """PASCAL Context with background as class 0: 60 classes, labels as stored."""

    classes = CONTEXT60_CLASSES
    palette = CONTEXT60_PALETTE
    reduce_zero_label = False
