"""A generic dataset of images and index-PNG masks in two folders."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ann.data.base import SegmentationDataset
from ann.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class FolderDataset(SegmentationDataset):
    """``{root}/{img_dir}/NAME{img_suffix}`` with ``{root}/{mask_dir}/NAME{mask_suffix}``.

    ``img_dir`` and ``mask_dir`` may contain ``{split}``. Masks are index PNGs
    whose values are class indices in [0, K), ``ignore_index`` for void.
    Subfolders are searched recursively; NAME keeps its relative path.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        classes: Sequence[str],
        palette: Sequence[Sequence[int]] | None = None,
        img_dir: str = "images/{split}",
        mask_dir: str = "masks/{split}",
        img_suffix: str = ".png",
        mask_suffix: str = ".png",
        transforms: Callable | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(transforms, ignore_index, classes, palette)
        self.root = Path(root)
        self.split = split
        image_root = self.root / img_dir.format(split=split)
        mask_root = self.root / mask_dir.format(split=split)
        if not image_root.is_dir():
            raise DataError(
                f"dataset.root: no image folder {image_root} (expected images as "
                f"{img_dir.format(split=split)}/NAME{img_suffix} and masks as "
                f"{mask_dir.format(split=split)}/NAME{mask_suffix} under {self.root})"
            )
        images = {
            str(p.relative_to(image_root))[: -len(img_suffix)]: p
            for p in sorted(image_root.rglob(f"*{img_suffix}"))
        }
        masks = (
            {
                str(p.relative_to(mask_root))[: -len(mask_suffix)]: p
                for p in sorted(mask_root.rglob(f"*{mask_suffix}"))
            }
            if mask_root.is_dir()
            else {}
        )
        self.samples = pair_samples(images, masks, image_root, mask_root, f"NAME{img_suffix} files")
        self._names = sorted(images)

    def sample_name(self, index: int) -> str:
        return self._names[index]


def pair_samples(
    images: dict[str, Path],
    labels: dict[str, Path],
    image_root: Path,
    label_root: Path,
    expected: str = "",
) -> list[tuple[Path, Path]]:
    """Pairs images and labels by key, raising one message on any mismatch
    (the count and up to 5 names). ``expected`` describes the file pattern."""
    if not images:
        hint = f" (expected {expected})" if expected else ""
        raise DataError(f"{image_root}: no images found{hint}")
    lonely_images = sorted(set(images) - set(labels))
    lonely_labels = sorted(set(labels) - set(images))
    if lonely_images:
        raise DataError(
            f"{len(lonely_images)} image(s) in {image_root} have no label in {label_root}: "
            f"{', '.join(lonely_images[:5])}"
        )
    if lonely_labels:
        raise DataError(
            f"{len(lonely_labels)} label(s) in {label_root} have no image in {image_root}: "
            f"{', '.join(lonely_labels[:5])}"
        )
    return [(images[k], labels[k]) for k in sorted(images)]
