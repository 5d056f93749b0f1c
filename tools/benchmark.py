"""Benchmarks: python tools/benchmark.py {heads,model,data,eval,train,infer,predict} [--json PATH] [options] (ann/commands/benchmark.py)"""

import sys

from ann.commands.benchmark import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
