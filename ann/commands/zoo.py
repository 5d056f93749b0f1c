"""``tools/zoo.py``: the model registry on the command line.

python tools/zoo.py list [--dataset cityscapes] [--json]
python tools/zoo.py fetch NAME      # download + convert now; prints the checkpoint's path
"""

from __future__ import annotations

import json
import sys

from ann.errors import OneLineArgumentParser, exit_2_on_user_error
from ann.hub.zoo import ENV, ZooEntry, list_models, pretrained_checkpoint

HEADER = ("name", "dataset", "backbone", "crop", "iters", "mIoU", "ms+flip", "experiment", "url")


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def row(entry: ZooEntry) -> tuple[str, ...]:
    """One table row; an entry without a URL shows where its file goes."""
    where = entry.url or f"(no stable URL: place {entry.file} at {entry.source_path()})"
    crop = "x".join(str(v) for v in entry.crop) or "-"
    return (
        entry.name,
        entry.dataset or "-",
        entry.backbone or "-",
        crop,
        entry.schedule or "-",
        _figure(entry.miou.get("ss")),
        _figure(entry.miou.get("ms_flip")),
        entry.experiment,
        where,
    )


def table(entries: list[ZooEntry]) -> str:
    """The entries as an aligned text table (the last column is not padded)."""
    rows = [HEADER, *(row(e) for e in entries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]) for r in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


@exit_2_on_user_error
def main(argv: list[str] | None = None) -> int:
    """``list`` prints the registry (``--json``: a JSON list of entries);
    ``fetch NAME`` downloads and converts one model now. 2 on a user error."""
    parser = OneLineArgumentParser(
        prog="tools/zoo.py",
        description="The published ANN models (configs/zoo.yaml) and your own "
        f"(${ENV}=my_models.yaml, see docs/model_zoo.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="print the registry as a table")
    listing.add_argument("--dataset", help="only this dataset's models (e.g. cityscapes)")
    listing.add_argument("--json", action="store_true", help="a JSON list for scripts")
    fetching = sub.add_parser("fetch", help="download and convert a model now")
    fetching.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(pretrained_checkpoint(args.name, "tools/zoo.py fetch"))
        return 0
    entries = list_models(args.dataset)
    if args.json:
        json.dump([e.as_dict() for e in entries], sys.stdout, indent=1)
        print()
    else:
        print(table(entries))
        print(
            f"{len(entries)} models; use one as checkpoint=zoo:NAME or Segmenter.from_pretrained(NAME)"
        )
    return 0
