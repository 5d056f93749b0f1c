"""A benchmark's worker process, started by :func:`ann.benchmarks.harness.run_worker`:
``python -m ann.benchmarks MODULE:FUNCTION SPEC_JSON`` prints ``FUNCTION(SPEC)`` as JSON."""

import importlib
import json
import sys

if __name__ == "__main__":
    module, _, name = sys.argv[1].partition(":")
    fn = getattr(importlib.import_module(module), name)
    print(json.dumps(fn(json.loads(sys.argv[2]))), flush=True)
