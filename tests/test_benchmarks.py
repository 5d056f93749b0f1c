"""The benchmark code paths at toy sizes, and the full-size memory check (slow)."""

from __future__ import annotations

import argparse

import pytest
import torch
from hydra.utils import instantiate

from ann.benchmarks import heads, model
from conftest import compose_cfg


@pytest.mark.parametrize("case", ["nl_matmul", "apnb_sdpa", "afnb_matmul", "ann_head"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_heads_worker_toy(case: str, mode: str) -> None:
    args = argparse.Namespace(warmup=0, channels=32, key=8, value=8, device="cpu")
    r = heads.worker(case, 9, 11, mode, 1, args)
    assert r["time_s"] > 0 and r["peak_bytes"] >= 0


def test_model_flops_counted_on_meta() -> None:
    params, flops, split = model.count_flops("ann_r18", 64, 64)
    assert params > 10e6 and flops > 1e9
    assert set(split) >= {"EncoderDecoder.backbone", "EncoderDecoder.decode_head"}


@pytest.mark.slow
def test_r101_ann_769_forward_within_24_gib() -> None:
    """The full-size model at the Cityscapes 769×769 crop, eval on CPU."""
    net = instantiate(
        compose_cfg(
            ["model=ann_r101", "dataset=cityscapes", "model.backbone.pretrained=null"]
        ).model
    ).eval()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set
    with torch.no_grad():
        out = net(torch.randn(1, 3, 769, 769))
    assert out.shape == (1, 19, 769, 769)
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    assert hwm * 1024 < 24 * 2**30, f"peak resident set {hwm / 2**20:.1f} GiB"


def test_loader_benchmark_measures_forkserver(tmp_path) -> None:
    from ann.benchmarks import loader

    root = loader.write_tree(tmp_path / "data", 4, width=256, height=128)
    threads = torch.get_num_threads()
    try:
        r = loader.measure("forkserver", str(root), workers=1, samples=4, loaders=2)
    finally:
        torch.set_num_threads(threads)  # measure() sets 1, as in a worker
    assert r["first_loader_s"] > 0 and r["later_loader_s"] > 0 and r["images_per_s"] > 0
