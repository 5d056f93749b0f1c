"""The dataset base class: pairs of image and label files, read and transformed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ann.errors import DataError


def read_image(path: Path) -> np.ndarray:
    """Reads an RGB image as (H, W, 3) uint8, naming the file if it is unreadable."""
    try:
        with Image.open(path) as img:
            # np.array, not asarray: a writable array (torch refuses read-only ones).
            return np.array(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from None


def write_label(label: np.ndarray, out: Path) -> None:
    """Writes (H, W) uint8 class indices as a grey PNG, atomically: a file that
    exists is whole (a temporary named per process, then renamed), so an
    interrupted preparation never leaves a truncated label behind."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    Image.fromarray(np.ascontiguousarray(label), mode="L").save(tmp, format="PNG")
    os.replace(tmp, out)


def write_split(path: Path, names: Iterable[str]) -> None:
    """Writes a split file, one name per line, atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{n}\n" for n in names))
    os.replace(tmp, path)


def read_label(path: Path) -> np.ndarray:
    """Reads an index label PNG as (H, W) uint8 class indices.

    Palette ("P") and grey ("L", 16-bit "I") images are read as indices. An
    RGB image is accepted only when it is grey (R == G == B); a colour label
    is refused, since colours are not class indices.
    """
    try:
        with Image.open(path) as img:
            label = np.array(img)  # writable: torch refuses read-only arrays
            mode = img.mode
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated label ({exc})") from None
    if mode in ("RGB", "RGBA"):
        rgb = label[..., :3]
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
            raise DataError(
                f"{path}: label is an RGB colour image; expected a single-channel index PNG "
                "(mode L or P) whose pixel values are class indices (convert colours to indices)"
            )
        label = rgb[..., 0]
    if label.ndim != 2:
        raise DataError(f"{path}: expected a 2-D index label, got shape {label.shape}")
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            bad = np.unique(label[(label < 0) | (label > 255)])
            raise DataError(
                f"{path}: label values {[int(v) for v in bad[:10]]} do not fit 0..255; "
                "expected class indices"
            )
        label = label.astype(np.uint8)
    return label


def require_dir(path: Path, layout: str) -> None:
    """Raises a DataError naming ``path`` and the expected ``layout`` if it is not a folder."""
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise DataError(f"dataset.root: {path} {what} (expected {layout})")


class SegmentationDataset(Dataset):
    """Image/label file pairs with class names and a palette.

    Subclasses fill ``self.samples`` with (image path, label path or None)
    and may override :meth:`map_label` (e.g. Cityscapes labelId -> trainId).

    ``__getitem__`` returns {"image": (3, H, W) float, "mask": (H, W) int64,
    "name": str}; an index may also be an (index, seed) pair, seeding the
    random transforms of that sample so that augmentation is reproducible.
    """

    classes: Sequence[str] = ()
    palette: Sequence[Sequence[int]] = ()

    def __init__(
        self,
        transforms: Callable | None = None,
        ignore_index: int = 255,
        classes: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.transforms = transforms
        self.ignore_index = ignore_index
        if classes is not None:
            self.classes = tuple(classes)
        if palette is not None:
            self.palette = tuple(tuple(int(c) for c in p) for p in palette)
        if not self.palette:
            self.palette = default_palette(len(self.classes))
        self.samples: list[tuple[Path, Path | None]] = []

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def map_label(self, label: np.ndarray) -> np.ndarray:
        """Maps stored label values to train ids in [0, K) ∪ {ignore}: (H, W) -> (H, W)."""
        return label

    def sample_name(self, index: int) -> str:
        return self.samples[index][0].stem

    def check_label(self, label: np.ndarray, path: Path, stored: np.ndarray | None = None) -> None:
        """Raises a DataError naming ``path`` and the offending values if the
        mapped ``label`` (H, W) has values outside [0, K) ∪ {ignore}.
        ``stored`` is the label as read, to show the file's own values."""
        bad = (label >= self.num_classes) & (label != self.ignore_index)
        if bad.any():
            values = sorted(int(v) for v in np.unique(label[bad]))[:10]
            shown = f"{values}"
            if stored is not None and not np.array_equal(stored, label):
                raw = sorted(int(v) for v in np.unique(stored[bad]))[:10]
                shown = f"{raw} (mapped to {values})"
            raise DataError(
                f"{path}: label values {shown} outside [0, {self.num_classes}) and ignore "
                f"{self.ignore_index}; expected class indices for the {self.num_classes} classes"
            )

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Reads sample ``index``: image (H, W, 3) uint8, label (H, W) uint8."""
        image_path, label_path = self.samples[index]
        image = read_image(image_path)
        if label_path is None:
            label = np.full(image.shape[:2], self.ignore_index, dtype=np.uint8)
        else:
            stored = read_label(label_path)
            label = self.map_label(stored)
            self.check_label(label, label_path, stored)
            if label.shape != image.shape[:2]:
                raise DataError(
                    f"{label_path}: label size {label.shape[::-1]} differs from image "
                    f"{image_path.name} size {image.shape[1::-1]}"
                )
        return image, label

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        seed = None
        if isinstance(index, tuple | list):
            index, seed = index
        image, label = self.load(index)
        if self.transforms is not None:
            image, mask = self.transforms(image, label, seed=seed)
        else:
            image = torch.from_numpy(image).permute(2, 0, 1).float()
            mask = torch.from_numpy(label.astype(np.int64))
        return {"image": image, "mask": mask, "name": self.sample_name(index)}


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """PASCAL VOC's bit-interleaved colour map, a distinct colour per class."""
    palette = []
    for i in range(num_classes):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append((r, g, b))
    return tuple(palette)
