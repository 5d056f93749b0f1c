"""tools/benchmark.py eval runs and its implementations agree (slow: a smoke run)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_benchmark_eval_smoke() -> None:
    from ann.benchmarks.eval import main

    out = main(["--cm-reps", "1", "--models", "r18", "--r18-size", "32", "64", "--images", "1"])
    assert out["confusion_matrix"]["agree"] is True
    assert {r["mode"] for r in out["end_to_end"]} == {"whole", "slide", "6-scale+flip"}
    assert all(r["images_per_s"] > 0 for r in out["end_to_end"])
    assert all(r["vs_whole"] == 1 for r in out["end_to_end"] if r["mode"] == "whole")
    results = out["confusion_matrix"]["results"]
    assert len(results) == 4  # ours, torchmetrics with and without checks, cityscapesscripts
    assert all(r["mpixel_per_s"] > 0 and r["ms_per_update"] > 0 for r in results.values())
