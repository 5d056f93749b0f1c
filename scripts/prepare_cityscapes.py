"""Writes Cityscapes' *_gtFine_labelTrainIds.png (19 trainIds, 255 ignore) next
to every *_gtFine_labelIds.png, so that training reads them without mapping:

    python scripts/prepare_cityscapes.py /data/cityscapes [--splits train val] [--nproc 8]

The mapping comes from cityscapesscripts' label table (ann.data.cityscapes).
Existing trainId files are kept unless --overwrite; each file is written to a
temporary name and renamed, so an interrupted run leaves no half-written PNG.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from ann.data.base import read_label, require_dir, write_label
from ann.data.cityscapes import label_id_to_train_id_lut
from ann.data.loader import worker_context
from ann.errors import UserError, exit_2_on_user_error

_LUT = label_id_to_train_id_lut()
LAYOUT = "gtFine/{train,val,test}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png under the root"


def train_id_path(label_ids: Path) -> Path:
    """gtFine/.../X_gtFine_labelIds.png -> gtFine/.../X_gtFine_labelTrainIds.png."""
    return label_ids.with_name(label_ids.name.replace("_labelIds.png", "_labelTrainIds.png"))


def convert(label_ids: Path, overwrite: bool = False) -> bool:
    """Writes the trainId PNG of one labelIds PNG; False if it existed already."""
    out = train_id_path(label_ids)
    if out.exists() and not overwrite:
        return False
    train_ids = _LUT[read_label(label_ids)]
    write_label(train_ids, out)
    return True


def _convert_star(args: tuple[Path, bool]) -> bool:
    return convert(*args)


def prepare(root: Path, splits: list[str], nproc: int = 1, overwrite: bool = False) -> int:
    """Converts every labelIds PNG of ``splits``; returns the number written."""
    require_dir(root, LAYOUT)
    files: list[Path] = []
    for split in splits:
        split_dir = root / "gtFine" / split
        require_dir(split_dir, LAYOUT)
        files += sorted(split_dir.rglob("*_gtFine_labelIds.png"))
    if not files:
        raise UserError(f"{root / 'gtFine'}: no *_gtFine_labelIds.png files (expected {LAYOUT})")
    jobs = [(f, overwrite) for f in files]
    bar = tqdm(total=len(jobs), desc="labelIds -> trainIds", unit="file")
    written = 0
    if nproc > 1:
        with worker_context().Pool(nproc) as pool:
            for done in pool.imap_unordered(_convert_star, jobs, chunksize=8):
                written += done
                bar.update(1)
    else:
        for job in jobs:
            written += _convert_star(job)
            bar.update(1)
    bar.close()
    return written


@exit_2_on_user_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the folder holding leftImg8bit/ and gtFine/")
    parser.add_argument(
        "--splits",
        nargs="+",
        default=["train", "val"],
        help="splits to convert (default: train val)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="worker processes (default: the cores, at most 8)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="rewrite trainId files that exist already"
    )
    args = parser.parse_args(argv)
    written = prepare(args.root, args.splits, args.nproc, args.overwrite)
    print(f"wrote {written} *_gtFine_labelTrainIds.png files under {args.root / 'gtFine'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
