"""Convert a published ANN checkpoint: python tools/convert.py {mmseg,official} INPUT OUTPUT"""

import sys

from ann.commands.convert import main

if __name__ == "__main__":
    sys.exit(main())
