"""The synthetic generator, the folder dataset and the transforms."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ann.data.folder import FolderDataset
from ann.data.synthetic import SHAPES_CLASSES, ShapesDataset, generate_shapes
from ann.data.transforms import EvalTransform, TrainTransform
from ann.errors import DataError


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_generator_layout(shapes_root: Path) -> None:
    for split, count in (("train", 16), ("val", 6)):
        images = sorted((shapes_root / "images" / split).glob("*.png"))
        masks = sorted((shapes_root / "masks" / split).glob("*.png"))
        assert len(images) == len(masks) == count
        assert [p.name for p in images] == [p.name for p in masks]
    image = Image.open(shapes_root / "images/train/00000.png")
    mask = Image.open(shapes_root / "masks/train/00000.png")
    assert image.mode == "RGB" and mask.mode == "L" and image.size == mask.size == (64, 64)
    values = np.unique(np.asarray(mask))
    assert set(values) <= set(range(len(SHAPES_CLASSES)))


def test_generator_is_deterministic(tmp_path: Path, shapes_root: Path) -> None:
    again = generate_shapes(tmp_path / "again", 16, 6, size=64, seed=0)
    assert _digest(again) == _digest(shapes_root)
    other = generate_shapes(tmp_path / "other", 16, 6, size=64, seed=1)
    assert _digest(other) != _digest(shapes_root)


def test_colour_does_not_decide_the_class(shapes_root: Path) -> None:
    """A per-pixel colour classifier (nearest class-mean colour, fitted on
    train) is poor on val: the classes need context."""
    import torch

    from ann.evaluation.metrics import compute_metrics, confusion_matrix

    def pixels(split: str) -> tuple[np.ndarray, np.ndarray]:
        ds = ShapesDataset(shapes_root, split)
        images = [np.asarray(Image.open(i)).reshape(-1, 3) for i, _ in ds.samples]
        masks = [np.asarray(Image.open(m)).reshape(-1) for _, m in ds.samples]
        return np.concatenate(images).astype(float), np.concatenate(masks)

    x, y = pixels("train")
    centres = np.stack([x[y == c].mean(0) for c in range(len(SHAPES_CLASSES))])
    xv, yv = pixels("val")
    pred = ((xv[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    conf = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(yv.astype(np.int64)), 5)
    assert compute_metrics(conf, SHAPES_CLASSES)["mIoU"] < 0.35


def test_folder_dataset_items(shapes_root: Path) -> None:
    ds = FolderDataset(shapes_root, "val", SHAPES_CLASSES, transforms=EvalTransform())
    assert len(ds) == 6 and ds.num_classes == 5
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (64, 64)
    assert item["name"] == "00000"


def test_folder_dataset_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no image folder"):
        FolderDataset(tmp_path / "nowhere", "train", ["a", "b"])


def test_folder_dataset_unpaired_files(tmp_path: Path, shapes_root: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(shapes_root, root)
    (root / "masks/val/00003.png").unlink()
    with pytest.raises(DataError, match="1 image\\(s\\).*no label.*00003"):
        FolderDataset(root, "val", SHAPES_CLASSES)


def test_train_transform_keeps_image_and_mask_aligned() -> None:
    """The mask is derived from the image (bright pixels = 1); after every
    transform it must still match the transformed image."""
    rng = np.random.default_rng(0)
    image = np.zeros((90, 120, 3), np.uint8)
    mask = np.zeros((90, 120), np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, 80), rng.integers(0, 110)
        image[y : y + 10, x : x + 10] = 255
        mask[y : y + 10, x : x + 10] = 1
    t = TrainTransform((48, 48), scale=None, ratio_range=(0.5, 2.0), photometric=False)
    for seed in range(20):
        img, m = t(image, mask, seed=seed)
        assert img.shape == (3, 48, 48) and m.shape == (48, 48)
        bright = img.mean(0) > 1.0
        valid = m != 255
        assert set(m.unique().tolist()) <= {0, 1, 255}
        # Nearest-neighbour masks vs bilinear images can differ on a 1-pixel rim.
        agree = (bright[valid] == (m[valid] == 1)).float().mean()
        assert agree > 0.95
        assert (img[:, ~valid] == img[:, ~valid][:, :1]).all()  # padding is one constant
