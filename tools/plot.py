"""Overlay training curves of runs: python tools/plot.py RUN [RUN ...] [--out FILE.png] [--keys TAG ...]"""

import sys

from ann.commands.plot import main

if __name__ == "__main__":
    sys.exit(main())
