"""Benchmarks: python tools/benchmark.py {heads,model,data,eval,train,infer} [--json PATH] [options]

Each subcommand measures its candidates side by side in one run, prints a
table with ratios and writes the figures as JSON (default
outputs/benchmarks/<subcommand>.json). ``train`` and ``infer`` compare the
speed option sets (fp32 / bf16 / fp16 autocast, channels_last, torch.compile)
on whole training iterations and on whole-image / sliding-window inference;
``python tools/benchmark.py SUBCOMMAND --help`` lists each one's options, and
docs/performance.md describes them.
"""

import sys

from ann.commands.benchmark import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
