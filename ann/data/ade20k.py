"""ADE20K (the SceneParsing challenge release, ADEChallengeData2016), 150 classes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ann.data.base import SegmentationDataset, require_dir
from ann.data.folder import pair_samples

# A data table, kept several values a line: ruff would give each its own line.
# fmt: off
# The 150 class names and colours as mmsegmentation lists them (public data of
# the ADE20K SceneParsing benchmark, objectInfo150 order).
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed",
    "windowpane", "grass", "cabinet", "sidewalk", "person", "earth", "door",
    "table", "mountain", "plant", "curtain", "chair", "car", "water", "painting",
    "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat",
    "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand",
    "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway",
    "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island",
    "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight",
    "booth", "television receiver", "airplane", "dirt track", "apparel", "pole",
    "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent",
    "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher",
    "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
ADE20K_PALETTE = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),
    (120, 120, 80), (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7),
    (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51),
    (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3),
    (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71),
    (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7),
    (255, 122, 8), (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255),
    (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140), (250, 10, 15),
    (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
    (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112),
    (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173),
    (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255),
    (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20), (255, 184, 184),
    (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255),
    (0, 122, 255), (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0),
    (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255),
    (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255),
    (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),
    (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0),
    (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255),
    (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0),
    (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
)
# fmt: on

_SPLITS = {"train": "training", "val": "validation"}
_LAYOUT = (
    "the ADE20K layout ADEChallengeData2016/images/{training,validation}/NAME.jpg and "
    "ADEChallengeData2016/annotations/{training,validation}/NAME.png"
)


def reduce_zero_label_lut(ignore_index: int = 255) -> np.ndarray:
    """(256,) uint8 lookup table: 0 ("other") -> ignore, k -> k - 1, 255 stays ignore."""
    lut = np.arange(256, dtype=np.int64) - 1
    lut[0] = ignore_index
    lut[255] = ignore_index
    return lut.astype(np.uint8)


def find_ade_root(root: Path) -> Path:
    """``root`` itself if it holds images/ and annotations/, else root/ADEChallengeData2016."""
    if (root / "images").is_dir() or not (root / "ADEChallengeData2016").is_dir():
        return root
    return root / "ADEChallengeData2016"


class ADE20KDataset(SegmentationDataset):
    """``{root}/images/{split}/*.jpg`` with ``{root}/annotations/{split}/*.png``.

    ``root`` is the ADEChallengeData2016 folder (or its parent). ``split`` is
    ``training``/``validation`` (``train``/``val`` are accepted). Annotations
    store 0 for "other" and k for class k - 1: with ``reduce_zero_label``
    (the standard 150-class protocol) 0 becomes ignore and k becomes k - 1.
    """

    classes = ADE20K_CLASSES
    palette = ADE20K_PALETTE

    def __init__(
        self,
        root: str | Path,
        split: str,
        transforms: Callable | None = None,
        reduce_zero_label: bool = True,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(transforms, ignore_index)
        self.root = find_ade_root(Path(root))
        self.split = _SPLITS.get(split, split)
        require_dir(self.root, _LAYOUT)
        image_dir = self.root / "images" / self.split
        label_dir = self.root / "annotations" / self.split
        require_dir(image_dir, _LAYOUT)
        require_dir(label_dir, _LAYOUT)
        images = {p.stem: p for p in sorted(image_dir.glob("*.jpg"))}
        labels = {p.stem: p for p in sorted(label_dir.glob("*.png"))}
        self.samples = pair_samples(images, labels, image_dir, label_dir)
        self.reduce_zero_label = reduce_zero_label
        self._lut = reduce_zero_label_lut(ignore_index) if reduce_zero_label else None

    def map_label(self, label: np.ndarray) -> np.ndarray:
        """(H, W) stored values -> (H, W) train ids."""
        return label if self._lut is None else self._lut[label]
