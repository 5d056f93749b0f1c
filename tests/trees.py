"""Tiny dataset trees in each official layout, for the dataset tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ann.data.voc import VOC_PALETTE

# labelIds used in the tiny Cityscapes labels: trainable classes and void ones
# (0 unlabeled, 1 ego vehicle, 4 static, 9 parking, 14 guard rail, 30 trailer).
CITYSCAPES_IDS = (0, 1, 4, 7, 8, 9, 11, 14, 17, 21, 23, 24, 26, 30, 33)


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save_palette_png(label: np.ndarray, path: Path, palette) -> None:
    img = Image.fromarray(label, mode="P")
    flat = [c for rgb in palette for c in rgb]
    img.putpalette(flat + [224, 224, 192] * (256 - len(palette)))  # VOC's border colour
    img.save(path)


def make_cityscapes(
    root: Path,
    splits: dict[str, dict[str, int]] | None = None,
    size: tuple[int, int] = (64, 128),
    seed: int = 0,
) -> Path:
    """leftImg8bit/{split}/{city}/..._leftImg8bit.png and gtFine/{split}/{city}/
    ..._gtFine_{labelIds,color,instanceIds}.png + _polygons.json (test: no labels).
    Labels are vertical stripes of CITYSCAPES_IDS. Returns root."""
    splits = splits or {"train": {"aachen": 3, "bochum": 2}, "val": {"frankfurt": 2}}
    rng = np.random.default_rng(seed)
    h, w = size
    stripes = np.array(CITYSCAPES_IDS, np.uint8)[(np.arange(w) * len(CITYSCAPES_IDS)) // w]
    for split, cities in splits.items():
        for city, count in cities.items():
            img_dir = root / "leftImg8bit" / split / city
            gt_dir = root / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                stem = f"{city}_{i:06d}_000019"
                Image.fromarray(_image(rng, h, w)).save(img_dir / f"{stem}_leftImg8bit.png")
                if split == "test":
                    continue
                label = np.roll(np.tile(stripes, (h, 1)), i * 7, axis=1)
                Image.fromarray(label, mode="L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
                Image.fromarray(_image(rng, h, w)).save(gt_dir / f"{stem}_gtFine_color.png")
                Image.fromarray(label.astype(np.uint16)).save(
                    gt_dir / f"{stem}_gtFine_instanceIds.png"
                )
                (gt_dir / f"{stem}_gtFine_polygons.json").write_text("{}")
    return root


def make_ade(
    root: Path,
    counts: dict[str, int] | None = None,
    seed: int = 0,
    sizes: list[tuple[int, int]] | None = None,
) -> Path:
    """ADEChallengeData2016/images/{training,validation}/ADE_*.jpg and
    annotations/.../*.png with odd sizes (or image i of a split (h, w) =
    ``sizes[i % len(sizes)]``) and label 0 ("other"). Returns the
    ADEChallengeData2016 folder."""
    counts = counts or {"training": 3, "validation": 2}
    rng = np.random.default_rng(seed)
    ade = root / "ADEChallengeData2016"
    for split, count in counts.items():
        (ade / "images" / split).mkdir(parents=True, exist_ok=True)
        (ade / "annotations" / split).mkdir(parents=True, exist_ok=True)
        tag = "train" if split == "training" else "val"
        for i in range(count):
            h, w = sizes[i % len(sizes)] if sizes else (37 + 6 * i, 53 + 10 * i)  # odd sizes
            stem = f"ADE_{tag}_{i + 1:08d}"
            Image.fromarray(_image(rng, h, w)).save(ade / "images" / split / f"{stem}.jpg")
            label = rng.integers(0, 151, (h, w)).astype(np.uint8)
            label[:4] = 0
            label[-1, -1] = 150
            Image.fromarray(label, mode="L").save(ade / "annotations" / split / f"{stem}.png")
    return ade


def make_voc(
    root: Path,
    train: list[str],
    val: list[str],
    extra: list[str] = (),
    seed: int = 0,
    sizes: list[tuple[int, int]] | None = None,
) -> Path:
    """VOCdevkit/VOC2012 with JPEGImages (train + val + extra, odd sizes, or
    image i (h, w) = ``sizes[i % len(sizes)]``),
    SegmentationClass palette PNGs with 255 borders (train + val) and
    ImageSets/Segmentation/{train,val,trainval}.txt. Returns the VOC2012 folder."""
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([*train, *val, *extra]):
        h, w = sizes[i % len(sizes)] if sizes else (45 + 2 * i, 61 + 3 * i)
        Image.fromarray(_image(rng, h, w)).save(voc / "JPEGImages" / f"{name}.jpg")
        if name in extra:
            continue
        label = np.zeros((h, w), np.uint8)
        label[10:30, 15:40] = 1 + i % 20
        label[9, 14:41] = 255  # the void border around the object
        label[30, 14:41] = 255
        _save_palette_png(label, voc / "SegmentationClass" / f"{name}.png", VOC_PALETTE)
    sets = voc / "ImageSets" / "Segmentation"
    sets.joinpath("train.txt").write_text("".join(f"{n}\n" for n in train))
    sets.joinpath("val.txt").write_text("".join(f"{n}\n" for n in val))
    sets.joinpath("trainval.txt").write_text("".join(f"{n}\n" for n in [*train, *val]))
    return voc


def make_sbd(root: Path, voc: Path, train: list[str], val: list[str], seed: int = 0) -> Path:
    """benchmark_RELEASE/dataset/{cls/*.mat, img/*.jpg, train.txt, val.txt}; a
    name's mat has the size of its VOC image when VOC has one. Returns
    benchmark_RELEASE."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    ds = root / "benchmark_RELEASE" / "dataset"
    (ds / "cls").mkdir(parents=True, exist_ok=True)
    (ds / "img").mkdir(parents=True, exist_ok=True)
    for name in [*train, *val]:
        voc_image = voc / "JPEGImages" / f"{name}.jpg"
        if voc_image.is_file():
            w, h = Image.open(voc_image).size
        else:
            h, w = 39, 57
            Image.fromarray(_image(rng, h, w)).save(ds / "img" / f"{name}.jpg")
        seg = rng.integers(0, 21, (h, w)).astype(np.uint8)
        gt = {"Segmentation": seg, "Boundaries": np.zeros(20, object), "CategoriesPresent": 1}
        savemat(ds / "cls" / f"{name}.mat", {"GTcls": gt})
    ds.joinpath("train.txt").write_text("".join(f"{n}\n" for n in train))
    ds.joinpath("val.txt").write_text("".join(f"{n}\n" for n in val))
    return root / "benchmark_RELEASE"


def polygon_annotation(path: Path, h: int, w: int) -> Path:
    """A cityscapesscripts polygons JSON with a few labelled regions."""
    objects = [
        {"label": "road", "polygon": [[0, h // 2], [w - 1, h // 2], [w - 1, h - 1], [0, h - 1]]},
        {"label": "sidewalk", "polygon": [[0, h // 3], [w // 2, h // 3], [w // 2, h // 2], [0, h // 2]]},
        {"label": "car", "polygon": [[5, 5], [40, 5], [40, 30], [5, 30]]},
        {"label": "license plate", "polygon": [[10, 20], [20, 20], [20, 25], [10, 25]]},
        {"label": "guard rail", "polygon": [[60, 2], [90, 2], [90, 12], [60, 12]]},
        {"label": "ego vehicle", "polygon": [[0, h - 8], [w - 1, h - 8], [w - 1, h - 1], [0, h - 1]]},
        {"label": "cargroup", "polygon": [[95, 20], [120, 20], [120, 30], [95, 30]]},
    ]  # fmt: skip
    path.write_text(json.dumps({"imgHeight": h, "imgWidth": w, "objects": objects}))
    return path
