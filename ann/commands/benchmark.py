"""``tools/benchmark.py``: python tools/benchmark.py {heads,model,data,eval,train,infer,predict,compare} [--json PATH] [options]

Each subcommand measures its candidates side by side in one run, prints a
table with ratios and writes the figures as JSON (default
outputs/benchmarks/<subcommand>.json). ``train`` and ``infer`` compare the
speed option sets (fp32 / bf16 / fp16 autocast, channels_last, torch.compile)
on whole training iterations and on whole-image / sliding-window inference; ``compare`` runs mmsegmentation
1.2.2 against this project side by side (speed-up = mmseg time / ours);
``python tools/benchmark.py SUBCOMMAND --help`` lists each one's options, and
docs/performance.md describes them.
"""

from __future__ import annotations

import difflib
import importlib
import json
import sys
from pathlib import Path

from ann.benchmarks import SUBCOMMANDS


def main(argv: list[str]) -> int:
    """Runs ``argv[0]``'s benchmark with the rest and writes its figures as JSON;
    ``--help`` alone lists the subcommands (exit 0), no subcommand is an error (2)."""
    if not argv or argv[0] not in SUBCOMMANDS:
        if argv and argv[0] in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        choices = ", ".join(SUBCOMMANDS)
        if not argv:
            print(f"error: name a benchmark: one of {choices} (--help)", file=sys.stderr)
        else:
            near = difflib.get_close_matches(argv[0], SUBCOMMANDS, n=1)
            mean = f"; did you mean {near[0]}?" if near else ""
            print(f"error: unknown benchmark {argv[0]!r}{mean} (one of {choices})", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    out = Path("outputs/benchmarks") / f"{name}.json"
    if "--json" in rest:
        i = rest.index("--json")
        if i + 1 >= len(rest):
            print("error: --json needs a PATH", file=sys.stderr)
            return 2
        out = Path(rest[i + 1])
        rest = rest[:i] + rest[i + 2 :]
    if {"-h", "--help"} & set(rest):  # the subcommand's parser prints the rest and exits
        print(f"--json PATH: write the figures as JSON to PATH (default {out})\n")
    results = importlib.import_module(f"ann.benchmarks.{name}").main(rest)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
