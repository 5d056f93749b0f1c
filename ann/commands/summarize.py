"""The command line: ``python tools/summarize.py DIR [DIR ...] [--out PREFIX]``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ann.errors import OneLineArgumentParser, exit_2_on_user_error
from ann.summary.configurations import summarize
from ann.summary.report import to_markdown, write_summary


@exit_2_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """``python tools/summarize.py DIR [DIR ...] [--out PREFIX]``; prints the
    markdown summary, writes it and the CSV files, returns the exit status
    (2 for a user error, printed as one line)."""
    parser = OneLineArgumentParser(
        prog="tools/summarize.py",
        description="Summarise runs (seed sweeps) per configuration: mIoU mean ± std over seeds.",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="folders to search for runs")
    parser.add_argument(
        "--out",
        metavar="PREFIX",
        help="where to write summary.md, summary.csv, summary_per_class.csv: a folder, or a "
        "prefix for the file names (default: the first DIR)",
    )
    args = parser.parse_args(argv)
    summary = summarize(args.dirs)
    paths = write_summary(summary, args.out if args.out is not None else Path(args.dirs[0]))
    print(to_markdown(summary), end="")
    print(f"\nwrote {', '.join(map(str, paths))}")
    return 0
