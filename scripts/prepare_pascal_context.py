"""Builds PASCAL Context (59 classes) for dataset=pascal_context / pascal_context_60:

    python scripts/prepare_pascal_context.py data/VOCdevkit data/trainval_merged.json [--nproc 8]

Reads VOC 2010's ``JPEGImages/`` and the PASCAL in Detail annotations
(``trainval_merged.json``: ``images`` with ``phase`` train/val,
``annos_segmentation`` with a COCO RLE per annotation) and writes, in
mmsegmentation's layout, ``VOC2010/SegmentationClassContext/NAME.png`` (index
PNGs, mode L: 0 background, 1..59 the classes) for every train and val image
and ``VOC2010/ImageSets/SegmentationContext/{train,val}.txt`` (4,998 and 5,105
images on the real data). Like the Detail API's class mask, every annotation
of an image is painted in the file's order over the ones before it; the 459
label ids then map to the 59 classes (ann.data.pascal_context), ids outside
them to background. Files are written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from ann.data.base import require_dir, write_label, write_split
from ann.data.loader import worker_context
from ann.data.pascal_context import LABEL_DIR, SPLIT_DIR, context_label
from ann.data.rle import RLEError
from ann.data.voc import find_voc_root
from ann.errors import DataError, exit_2_on_user_error

VOC_LAYOUT = "VOCdevkit/VOC2010 with JPEGImages/ (VOC 2010 trainval)"
SPLITS = ("train", "val")
_IMAGE_KEYS = ("image_id", "file_name", "height", "width", "phase")
_ANNOTATION_KEYS = ("image_id", "category_id", "segmentation")

# One label to write: (JPEG, PNG out, height, width, [(category_id, RLE), ...]).
Job = tuple[Path, Path, int, int, list[tuple[int, dict]]]


def load_annotations(path: Path) -> dict[str, Any]:
    """The Detail JSON as a dict, with one-line errors for a missing or malformed file."""
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a file"
        raise DataError(
            f"{path} {what} (expected PASCAL Context's trainval_merged.json from the "
            "PASCAL in Detail release; see docs/datasets.md)"
        )
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file ({exc}); download it again") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in ("images", "annos_segmentation", "categories") if k not in data]
    if missing:
        raise DataError(
            f"{path}: no {', '.join(repr(k) for k in missing)} key; expected the PASCAL in "
            "Detail annotations (trainval_merged.json)"
        )
    for key in ("images", "annos_segmentation", "categories"):
        if not isinstance(data[key], list):
            raise DataError(f"{path}: {key!r} is a {type(data[key]).__name__}, expected a list")
    return data


def _check_entry(entry: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(entry, dict) or any(k not in entry for k in keys):
        have = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise DataError(f"{where}: expected an object with keys {list(keys)}, got {have}")


def collect_jobs(data: dict[str, Any], json_path: Path, voc: Path, out_dir: Path) -> dict:
    """{split: [Job, ...]} for the train and val images of the JSON, checked:
    every image's JPEG exists, every annotation names a known image and category."""
    images: dict[Any, dict] = {}
    for i, img in enumerate(data["images"]):
        _check_entry(img, _IMAGE_KEYS, f"{json_path}: images[{i}]")
        if img["phase"] in SPLITS:
            images[img["image_id"]] = img
    categories = set()
    for i, cat in enumerate(data["categories"]):
        _check_entry(cat, ("category_id",), f"{json_path}: categories[{i}]")
        categories.add(cat["category_id"])
    per_image: dict[Any, list[tuple[int, dict]]] = defaultdict(list)
    known = {img["image_id"] for img in data["images"]}
    for i, ann in enumerate(data["annos_segmentation"]):
        where = f"{json_path}: annos_segmentation[{i}]"
        _check_entry(ann, _ANNOTATION_KEYS, where)
        cat = ann["category_id"]
        if not isinstance(cat, int) or cat < 0 or cat not in categories:
            raise DataError(f"{where}: category_id {cat!r} is not one of the file's categories")
        if ann["image_id"] not in known:
            raise DataError(f"{where}: image_id {ann['image_id']!r} is not in 'images'")
        if ann["image_id"] in images:
            per_image[ann["image_id"]].append((cat, ann["segmentation"]))
    if not images:
        raise DataError(f"{json_path}: no image has phase 'train' or 'val'")

    jobs: dict[str, list[Job]] = {split: [] for split in SPLITS}
    missing = []
    for image_id, img in images.items():
        jpeg = voc / "JPEGImages" / str(img["file_name"])
        if not jpeg.is_file():
            missing.append(str(img["file_name"]))
        out = out_dir / f"{Path(str(img['file_name'])).stem}.png"
        try:
            height, width = int(img["height"]), int(img["width"])
        except (TypeError, ValueError):
            raise DataError(f"{json_path}: image {img['file_name']} has no integer size") from None
        jobs[img["phase"]].append((jpeg, out, height, width, per_image[image_id]))
    if missing:
        raise DataError(
            f"{len(missing)} image(s) listed in {json_path} are missing from "
            f"{voc / 'JPEGImages'}: {', '.join(sorted(missing)[:5])} (expected VOC 2010 trainval)"
        )
    return jobs


def convert(job: Job) -> set[int]:
    """Writes one label PNG; returns the category ids it met outside the 59 classes."""
    jpeg, out, height, width, annotations = job
    try:
        with Image.open(jpeg) as img:
            size = img.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{jpeg}: unreadable image ({exc})") from None
    if size != (width, height):
        raise DataError(
            f"{jpeg}: size {size[0]}x{size[1]} differs from the annotations' {width}x{height} "
            "(expected VOC 2010's own JPEGImages)"
        )
    try:
        label, others = context_label(height, width, annotations)
    except RLEError as exc:
        raise DataError(f"{jpeg.name}: malformed segmentation in the annotations ({exc})") from None
    write_label(label, out)
    return others


def prepare(voc_root: Path, json_path: Path, nproc: int = 1) -> dict[str, list[str]]:
    """Writes SegmentationClassContext/ and the split files; returns {split: names}."""
    voc = find_voc_root(voc_root, "VOC2010")
    require_dir(voc, VOC_LAYOUT)
    require_dir(voc / "JPEGImages", VOC_LAYOUT)
    data = load_annotations(json_path)
    out_dir = voc / LABEL_DIR
    jobs = collect_jobs(data, json_path, voc, out_dir)
    del data  # the parsed file is large; the jobs hold what is needed
    out_dir.mkdir(exist_ok=True)
    all_jobs = [job for split in SPLITS for job in jobs[split]]
    others: set[int] = set()
    # Closed on an error too, so that the error line starts a line of its own.
    with tqdm(total=len(all_jobs), desc=LABEL_DIR, unit="file") as bar:
        if nproc > 1:
            with worker_context().Pool(nproc) as pool:
                for found in pool.imap_unordered(convert, all_jobs, chunksize=8):
                    others |= found
                    bar.update(1)
        else:
            for job in all_jobs:
                others |= convert(job)
                bar.update(1)
    if others:
        # mmsegmentation's converter asserts that these never occur.
        print(f"note: label ids outside the 59 classes became background: {sorted(others)[:20]}")
    sets = voc / SPLIT_DIR
    sets.mkdir(parents=True, exist_ok=True)
    names = {split: sorted(job[1].stem for job in jobs[split]) for split in SPLITS}
    for split in SPLITS:
        write_split(sets / f"{split}.txt", names[split])
    return names


@exit_2_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("voc_root", type=Path, help="VOCdevkit/VOC2010 (or a folder above it)")
    parser.add_argument("json", type=Path, help="PASCAL in Detail's trainval_merged.json")
    parser.add_argument(
        "--nproc",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="worker processes (default: the cores, at most 8)",
    )
    args = parser.parse_args(argv)
    names = prepare(args.voc_root, args.json, args.nproc)
    print(
        f"wrote {LABEL_DIR}/ and {SPLIT_DIR}/{{train,val}}.txt "
        f"({len(names['train'])} train, {len(names['val'])} val images)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
