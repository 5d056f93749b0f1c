"""Summarise runs per configuration (seeds grouped): python tools/summarize.py DIR [DIR ...] [--out PREFIX]

Prints a markdown table (mIoU mean ± std over seeds, min/max, best, iterations,
wall time, per-class IoU) and writes summary.md, summary.csv and
summary_per_class.csv (default: into the first DIR). See ann/summary/.
"""

import sys

from ann.commands.summarize import main

if __name__ == "__main__":
    sys.exit(main())
