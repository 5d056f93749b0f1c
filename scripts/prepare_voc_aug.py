"""Builds PASCAL VOC 2012 + SBD ("trainaug") for dataset=voc_aug:

    python scripts/prepare_voc_aug.py data/VOCdevkit/VOC2012 data/benchmark_RELEASE [--nproc 8]

Writes ``VOC2012/SegmentationClassAug/NAME.png`` (index PNGs, mode L) for every
SBD image (``benchmark_RELEASE/dataset/cls/NAME.mat``, struct GTcls.Segmentation)
and every VOC train/val image, VOC's own annotation winning where both exist
(it is finer and keeps the 255 void borders), and
``VOC2012/ImageSets/Segmentation/trainaug.txt``: SBD train + SBD val + VOC train,
minus VOC val (10,582 images on the real data). Images SBD has and JPEGImages
lacks are copied from SBD's img/. Files are written atomically.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from scipy.io import loadmat
from tqdm import tqdm

from ann.data.base import read_label, require_dir, write_label, write_split
from ann.data.loader import worker_context
from ann.data.voc import find_voc_root, read_split
from ann.errors import DataError, exit_2_on_user_error

VOC_LAYOUT = (
    "VOCdevkit/VOC2012 with JPEGImages/, SegmentationClass/ and "
    "ImageSets/Segmentation/{train,val}.txt"
)
SBD_LAYOUT = "benchmark_RELEASE/dataset with cls/NAME.mat, img/NAME.jpg, train.txt, val.txt"


def read_sbd_mat(path: Path) -> np.ndarray:
    """GTcls.Segmentation of an SBD .mat file as (H, W) uint8 class indices 0..20."""
    try:
        seg = loadmat(str(path), squeeze_me=True, struct_as_record=False)["GTcls"].Segmentation
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise DataError(f"{path}: not an SBD cls .mat with GTcls.Segmentation ({exc})") from None
    seg = np.asarray(seg)
    if seg.ndim != 2 or seg.size == 0 or seg.min() < 0 or seg.max() > 20:
        raise DataError(f"{path}: GTcls.Segmentation is not a 2-D map of class indices 0..20")
    return seg.astype(np.uint8)


def _convert(job: tuple[str, Path, Path]) -> None:
    """One label: ("voc", palette PNG, out) or ("sbd", .mat, out)."""
    kind, src, out = job
    write_label(read_label(src) if kind == "voc" else read_sbd_mat(src), out)


def find_sbd_root(root: Path) -> Path:
    """``root`` itself if it holds cls/, else root/dataset (benchmark_RELEASE/dataset)."""
    return root if (root / "cls").is_dir() or not (root / "dataset").is_dir() else root / "dataset"


def prepare(voc_root: Path, sbd_root: Path, nproc: int = 1) -> list[str]:
    """Writes SegmentationClassAug/ and trainaug.txt; returns the trainaug names."""
    voc = find_voc_root(voc_root)
    sbd = find_sbd_root(sbd_root)
    for folder in (voc, voc / "JPEGImages", voc / "SegmentationClass"):
        require_dir(folder, VOC_LAYOUT)
    require_dir(sbd / "cls", SBD_LAYOUT)
    sets = voc / "ImageSets" / "Segmentation"
    voc_train = read_split(sets / "train.txt", VOC_LAYOUT)
    voc_val = read_split(sets / "val.txt", VOC_LAYOUT)
    sbd_names = read_split(sbd / "train.txt", SBD_LAYOUT) + read_split(sbd / "val.txt", SBD_LAYOUT)

    voc_labels = {n: voc / "SegmentationClass" / f"{n}.png" for n in voc_train + voc_val}
    missing = [n for n, p in voc_labels.items() if not p.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} VOC image(s) listed in {sets} have no label in "
            f"{voc / 'SegmentationClass'}: {', '.join(missing[:5])}"
        )
    no_mat = [
        n for n in sbd_names if n not in voc_labels and not (sbd / "cls" / f"{n}.mat").is_file()
    ]
    if no_mat:
        raise DataError(
            f"{len(no_mat)} SBD image(s) listed in {sbd}/{{train,val}}.txt have no "
            f"{sbd / 'cls'}/NAME.mat: {', '.join(no_mat[:5])}"
        )
    trainaug = sorted(set(sbd_names + voc_train) - set(voc_val))

    no_image = []
    for name in trainaug:
        image = voc / "JPEGImages" / f"{name}.jpg"
        if not image.is_file():
            if (sbd / "img" / f"{name}.jpg").is_file():
                shutil.copyfile(sbd / "img" / f"{name}.jpg", image)
            else:
                no_image.append(name)
    if no_image:
        raise DataError(
            f"{len(no_image)} trainaug image(s) are in neither {voc / 'JPEGImages'} nor "
            f"{sbd / 'img'}: {', '.join(no_image[:5])}"
        )

    out_dir = voc / "SegmentationClassAug"
    out_dir.mkdir(exist_ok=True)
    jobs = [("voc", path, out_dir / f"{n}.png") for n, path in voc_labels.items()]
    jobs += [
        ("sbd", sbd / "cls" / f"{n}.mat", out_dir / f"{n}.png")
        for n in sorted(set(sbd_names) - set(voc_labels))
    ]
    bar = tqdm(total=len(jobs), desc="SegmentationClassAug", unit="file")
    if nproc > 1:
        with worker_context().Pool(nproc) as pool:
            for _ in pool.imap_unordered(_convert, jobs, chunksize=16):
                bar.update(1)
    else:
        for job in jobs:
            _convert(job)
            bar.update(1)
    bar.close()
    write_split(sets / "trainaug.txt", trainaug)
    return trainaug


@exit_2_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("voc_root", type=Path, help="VOCdevkit/VOC2012 (or a folder above it)")
    parser.add_argument("sbd_root", type=Path, help="SBD's benchmark_RELEASE (or its dataset/)")
    parser.add_argument(
        "--nproc",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="worker processes (default: the cores, at most 8)",
    )
    args = parser.parse_args(argv)
    names = prepare(args.voc_root, args.sbd_root, args.nproc)
    print(f"wrote SegmentationClassAug/ and trainaug.txt ({len(names)} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
