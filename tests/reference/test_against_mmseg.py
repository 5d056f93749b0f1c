"""One training step of cityscapes_ann against mmsegmentation 1.2.2 itself
(tests/reference/mmseg_real_step.py), not a re-implementation of it: losses,
gradients, BN statistics and counters, eval logits, in float64."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ann.benchmarks.compare import install_mmseg
from helpers import ROOT

pytestmark = pytest.mark.integration

REFERENCE = ROOT / "tests" / "reference"


@pytest.fixture(scope="module")
def mmseg_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned mmseg packages, installed from the package index (as
    ``tools/benchmark.py compare`` installs them)."""
    return install_mmseg(tmp_path_factory.mktemp("mmseg_packages"))


def test_one_training_step_matches_mmsegmentation(mmseg_packages: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", str(REFERENCE / "mmseg_real_step.py")],
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(map(str, (mmseg_packages, ROOT, ROOT / "tests"))),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # Both divide the loss sum by (pixels + float32 eps), a relative
    # eps_over_pixels (3.6e-12) from a plain mean.
    assert result["decode_loss"] < 1e-13 and result["aux_loss"] < 1e-13  # aux weight 0.4 in
    assert result["grads"] < 1e-13, result["grads_worst"]
    # Biases feeding a train-mode BN have an exact gradient of 0: noise on both sides.
    assert result["dead_grad_tensors"] == 4 and result["dead_grads_vs_typical"] < 1e-12
    assert result["bn_stats"] < 1e-13 and result["bn_counter_mismatches"] == 0
    assert result["eval_logits"] < 1e-13
    # APNB's shared query/key BN counts two updates per step in mmseg, as ours
    # with query_key_bn_updates=2; with 1 its statistics visibly differ.
    assert result["qk2_qk_bn_counter"] == result["mmseg_qk_bn_counter"] == 1002
    assert result["qk2_qk_bn_running_mean"] < 1e-13
    assert result["qk1_qk_bn_counter"] == 1001 and result["qk1_qk_bn_running_mean"] > 1e-3


@pytest.mark.timeout(1500)
def test_compare_runs_at_a_tiny_size(mmseg_packages: Path, tmp_path: Path) -> None:
    """``tools/benchmark.py compare`` end to end at tiny shapes: that it works
    and reports every case for both sides, not how fast."""
    out = tmp_path / "compare.json"
    command = [sys.executable, str(ROOT / "tools" / "benchmark.py"), "compare", "--json", str(out)]
    options = ["--mmseg-packages", str(mmseg_packages), "--infer-size", "64x96"]
    options += ["--train-size", "64x64", "--rounds", "1", "--iters", "1", "--threads", "2"]
    proc = subprocess.run(
        [*command, *options],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=1400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"infer", "fast", "onnxruntime", "train"}
    for case, r in results.items():
        assert r["speedup"] > 0, (case, r)
        assert r["ours"]["peak_bytes"] > 0 and r["mmseg"]["peak_bytes"] > 0, (case, r)
    assert (
        "speed-up = mmseg time / ours" in proc.stdout and "training step 2x3x64x64" in proc.stdout
    )
