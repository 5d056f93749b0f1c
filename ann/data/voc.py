"""PASCAL VOC 2012 segmentation (and VOC + SBD "trainaug"), 21 classes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ann.data.base import SegmentationDataset, default_palette, require_dir
from ann.errors import DataError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
# VOC's own colour map (the one its palette PNGs carry).
VOC_PALETTE = default_palette(len(VOC_CLASSES))

_LAYOUT = (
    "the VOC layout VOCdevkit/VOC2012/JPEGImages/NAME.jpg, "
    "VOCdevkit/VOC2012/{label_dir}/NAME.png and "
    "VOCdevkit/VOC2012/ImageSets/Segmentation/{split}.txt"
)


def find_voc_root(root: Path) -> Path:
    """``root`` itself if it holds JPEGImages/, else root/VOC2012 or root/VOCdevkit/VOC2012."""
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    return root


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
        image_dir = self.root / "JPEGImages"
        mask_dir = self.root / label_dir
        require_dir(self.root, layout)
        require_dir(image_dir, layout)
        require_dir(mask_dir, layout)
        split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        names = read_split(split_file, layout)
        if not names:
            raise DataError(f"{split_file}: the split lists no images")
        no_image = [n for n in names if not (image_dir / f"{n}.jpg").is_file()]
        if no_image:
            raise DataError(
                f"{len(no_image)} image(s) listed in {split_file} are missing from {image_dir}: "
                f"{', '.join(no_image[:5])}"
            )
        no_label = [n for n in names if not (mask_dir / f"{n}.png").is_file()]
        if no_label:
            raise DataError(
                f"{len(no_label)} image(s) listed in {split_file} have no label in {mask_dir}: "
                f"{', '.join(no_label[:5])}"
            )
        self.samples = [(image_dir / f"{n}.jpg", mask_dir / f"{n}.png") for n in names]
