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
        {
            "label": "sidewalk",
            "polygon": [[0, h // 3], [w // 2, h // 3], [w // 2, h // 2], [0, h // 2]],
        },
        {"label": "car", "polygon": [[5, 5], [40, 5], [40, 30], [5, 30]]},
        {"label": "license plate", "polygon": [[10, 20], [20, 20], [20, 25], [10, 25]]},
        {"label": "guard rail", "polygon": [[60, 2], [90, 2], [90, 12], [60, 12]]},
        {
            "label": "ego vehicle",
            "polygon": [[0, h - 8], [w - 1, h - 8], [w - 1, h - 1], [0, h - 1]],
        },
        {"label": "cargroup", "polygon": [[95, 20], [120, 20], [120, 30], [95, 30]]},
    ]
    path.write_text(json.dumps({"imgHeight": h, "imgWidth": w, "objects": objects}))
    return path


# Category ids and names of PASCAL Context's 459 labels (its labels.txt, the
# "categories" of the Detail JSON): the 59 benchmark classes and five others.
CONTEXT_LABELS = {
    2: "aeroplane",
    9: "bag",
    18: "bed",
    19: "bedclothes",
    22: "bench",
    23: "bicycle",
    25: "bird",
    31: "boat",
    33: "book",
    34: "bottle",
    44: "building",
    45: "bus",
    46: "cabinet",
    59: "car",
    65: "cat",
    68: "ceiling",
    72: "chair",
    80: "cloth",
    85: "computer",
    98: "cow",
    104: "cup",
    105: "curtain",
    113: "dog",
    115: "door",
    144: "fence",
    158: "floor",
    159: "flower",
    162: "food",
    187: "grass",
    189: "ground",
    207: "horse",
    220: "keyboard",
    232: "light",
    258: "motorbike",
    259: "mountain",
    260: "mouse",
    284: "person",
    295: "plate",
    296: "platform",
    308: "pottedplant",
    324: "road",
    326: "rock",
    347: "sheep",
    349: "shelves",
    354: "sidewalk",
    355: "sign",
    360: "sky",
    366: "snow",
    368: "sofa",
    397: "table",
    415: "track",
    416: "train",
    420: "tree",
    424: "truck",
    427: "tvmonitor",
    440: "wall",
    445: "water",
    454: "window",
    458: "wood",
    1: "accordion",
    3: "air conditioner",
    17: "bathtub",
    88: "container",
    459: "wool",
}
# The 59 classes of the benchmark by name (the VOC 20 first, as papers list them).
CONTEXT_59_NAMES = (
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
    "table",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
    "bag",
    "bed",
    "bench",
    "book",
    "building",
    "cabinet",
    "ceiling",
    "cloth",
    "computer",
    "cup",
    "door",
    "fence",
    "floor",
    "flower",
    "food",
    "grass",
    "ground",
    "keyboard",
    "light",
    "mountain",
    "mouse",
    "curtain",
    "platform",
    "sign",
    "plate",
    "road",
    "rock",
    "shelves",
    "sidewalk",
    "sky",
    "snow",
    "bedclothes",
    "track",
    "tree",
    "truck",
    "wall",
    "water",
    "window",
    "wood",
)


def rle_encode(mask: np.ndarray) -> dict:
    """COCO's compressed RLE of a (h, w) bool mask, written the way
    pycocotools' rleToString writes it: column-major runs, zeros first, each
    count (from the fourth on, minus the count two before) as 5-bit groups + 48."""
    flat = np.asarray(mask, bool).T.ravel().astype(np.int8)
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    chars = []
    for i, count in enumerate(runs):
        x = count - runs[i - 2] if i > 2 else count
        while True:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            chars.append(chr((c | 0x20 if more else c) + 48))
            if not more:
                break
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def make_pascal_context(
    root: Path,
    train: list[str],
    val: list[str],
    seed: int = 0,
    sizes: list[tuple[int, int]] | None = None,
) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """VOCdevkit/VOC2010/JPEGImages/NAME.jpg and root/trainval_merged.json in
    the PASCAL in Detail format: images (phase train/val, plus a test image
    without a JPEG), categories (CONTEXT_LABELS), and per image a few
    overlapping rectangles of the 59 classes and of other labels as compressed
    RLEs, painted in order. Image i (h, w) = ``sizes[i % len(sizes)]`` or odd
    small sizes. Returns (VOC2010 folder, JSON path, {name: the painted
    category ids})."""
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2010"
    (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
    label_ids = sorted(CONTEXT_LABELS)
    images, annotations, painted = [], [], {}
    for i, name in enumerate([*train, *val]):
        h, w = sizes[i % len(sizes)] if sizes else (41 + 4 * i, 57 + 6 * i)
        Image.fromarray(_image(rng, h, w)).save(voc / "JPEGImages" / f"{name}.jpg")
        image_id = int(name.replace("_", ""))  # how the Detail API reads names
        phase = "train" if name in train else "val"
        images.append(
            {
                "image_id": image_id,
                "file_name": f"{name}.jpg",
                "height": h,
                "width": w,
                "phase": phase,
                "date_captured": "2010-05-03",
            }
        )
        ids = np.zeros((h, w), np.int64)
        for k in range(5):
            cat = label_ids[(7 * i + 13 * k) % len(label_ids)]
            top, left = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
            mask = np.zeros((h, w), bool)
            mask[top : top + int(rng.integers(4, h)), left : left + int(rng.integers(4, w))] = True
            ids[mask] = cat
            ys, xs = np.nonzero(mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "segmentation": rle_encode(mask),
                    "area": int(mask.sum()),
                    "iscrowd": 0,
                    "bbox": [
                        int(xs.min()),
                        int(ys.min()),
                        int(np.ptp(xs)) + 1,
                        int(np.ptp(ys)) + 1,
                    ],
                    "parts": [],
                }
            )
        painted[name] = ids
    images.append(
        {
            "image_id": 2010999999,
            "file_name": "2010_999999.jpg",
            "height": 30,
            "width": 40,
            "phase": "test",
        }
    )
    categories = [
        {"category_id": c, "name": n, "supercategory": "object", "onlysemantic": False, "parts": []}
        for c, n in sorted(CONTEXT_LABELS.items())
    ]
    data = {
        "info": {"description": "tiny PASCAL in Detail tree"},
        "images": images,
        "annos_segmentation": annotations,
        "categories": categories,
        "parts": [],
        "annos_occlusion": [],
        "annos_boundary": [],
    }
    json_path = root / "trainval_merged.json"
    json_path.write_text(json.dumps(data))
    return voc, json_path, painted
