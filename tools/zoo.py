"""The model registry: python tools/zoo.py list [--dataset NAME] [--json] | fetch NAME"""

import sys

from ann.commands.zoo import main

if __name__ == "__main__":
    sys.exit(main())
