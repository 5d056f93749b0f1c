"""PASCAL VOC 2012 segmentation (and VOC + SBD "trainaug"), 21 classes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ann.data.base import SegmentationDataset, default_palette, require_dir
from ann.errors import DataError

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
# VOC's own colour map (the one its palette PNGs carry).
VOC_PALETTE = default_palette(len(VOC_CLASSES))

_LAYOUT = (
    "the VOC layout VOCdevkit/VOC2012/JPEGImages/NAME.jpg, "
    "VOCdevkit/VOC2012/{label_dir}/NAME.png and "
    "VOCdevkit/VOC2012/ImageSets/Segmentation/{split}.txt"
)


def find_voc_root(root: Path, year: str = "VOC2012") -> Path:
    """``root`` itself if it holds JPEGImages/, else root/{year} or root/VOCdevkit/{year}."""
    for candidate in (root, root / year, root / "VOCdevkit" / year):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    return root


def listed_samples(
    root: Path, label_dir: str, split_file: Path, layout: str
) -> list[tuple[Path, Path]]:
    """(JPEGImages/NAME.jpg, {label_dir}/NAME.png) for every name ``split_file``
    lists, after checking the VOC layout under ``root``: one-line DataErrors
    for a missing folder or split file, an empty split, and listed images
    without their JPEG or label (``layout`` describes what is expected)."""
    image_dir, mask_dir = root / "JPEGImages", root / label_dir
    for folder in (root, image_dir, mask_dir):
        require_dir(folder, layout)
    names = read_split(split_file, layout)
    if not names:
        raise DataError(f"{split_file}: the split lists no images")
    for folder, suffix, what in (
        (image_dir, ".jpg", "are missing from"),
        (mask_dir, ".png", "have no label in"),
    ):
        missing = [n for n in names if not (folder / f"{n}{suffix}").is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} image(s) listed in {split_file} {what} {folder}: "
                f"{', '.join(missing[:5])}"
            )
    return [(image_dir / f"{n}.jpg", mask_dir / f"{n}.png") for n in names]


def read_split(path: Path, layout: str) -> list[str]:
    """Names listed one per line in an ImageSets file (blank lines skipped)."""
    if not path.is_file():
        raise DataError(f"dataset.root: no split file {path} (expected {layout})")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


class VOCDataset(SegmentationDataset):
    """``JPEGImages/NAME.jpg`` with ``{label_dir}/NAME.png`` for the names in
    ``ImageSets/Segmentation/{split}.txt``.

    ``root`` is VOCdevkit/VOC2012 (or a folder above it). Labels are palette
    PNGs read as indices (0 background, 1..20 objects, 255 the void border).
    ``label_dir`` is ``SegmentationClass`` for VOC's own annotations or
    ``SegmentationClassAug`` for the SBD-augmented set that
    scripts/prepare_voc_aug.py writes (with ``split=trainaug``).
    """

    classes = VOC_CLASSES
    palette = VOC_PALETTE

    def __init__(
        self,
        root: str | Path,
        split: str,
        transforms: Callable | None = None,
        label_dir: str = "SegmentationClass",
        ignore_index: int = 255,
    ) -> None:
        super().__init__(transforms, ignore_index)
        self.root = find_voc_root(Path(root))
        self.split = split
        layout = _LAYOUT.format(label_dir=label_dir, split=split)
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        self.samples = listed_samples(self.root, label_dir, split_file, layout)
