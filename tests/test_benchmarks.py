"""The benchmark code paths at toy sizes, and the full-size memory check (slow)."""

from __future__ import annotations

import argparse
import json

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


# -- train and infer (issue #11): option sets side by side ---------------------


def test_option_sets_parse() -> None:
    from ann.benchmarks.options import ALL_SETS, OptionSet, cpu_fp16_skip, parse_sets

    assert len(ALL_SETS) == 12 and len(set(ALL_SETS)) == 12 and ALL_SETS[0] == "fp32"
    sets = parse_sets("fp32,bf16+compile+cl,bf16+cl+compile")
    assert [s.name for s in sets] == ["fp32", "bf16+cl+compile"]
    assert sets[1].dtype == torch.bfloat16 and sets[0].dtype is None
    with pytest.raises(ValueError, match="option set"):
        OptionSet.parse("fp8+cl")
    assert cpu_fp16_skip(OptionSet("bf16"), "cpu", allow=False) is None
    assert cpu_fp16_skip(OptionSet("fp16"), "cuda", allow=False) is None
    assert cpu_fp16_skip(OptionSet("fp16"), "cpu", allow=True) is None


@pytest.fixture
def one_thread():
    """The workers run with 1 thread: on 2 shared CPUs, 2 OpenMP threads that
    wait for each other slow a tiny model down several times."""
    threads = torch.get_num_threads()
    yield "1"
    torch.set_num_threads(threads)  # the in-process workers set theirs


def _in_process(module):
    """run_worker without the subprocess: the tests check the figures' plumbing,
    test_benchmark_worker_subprocess the subprocess itself."""
    return lambda name, spec, threads, timeout=None: module.worker(spec)


def test_train_benchmark_tiny(shapes_root, monkeypatch, one_thread) -> None:
    from ann.benchmarks import train

    monkeypatch.setattr(train, "run_worker", _in_process(train))
    out = train.main(
        ["--device", "cpu", "--experiments", "demo", "--size", "33x33", "--batch", "2",
         "--iters", "1", "--warmup", "1", "--sets", "fp32,bf16,bf16+cl", "--workers", "0",
         "--threads", one_thread, "--override", f"dataset.root={shapes_root}",
         "--override", "dataset.num_train=16", "--override", "dataset.num_val=6"]
    )  # fmt: skip
    json.dumps(out)  # tools/benchmark.py writes it as JSON
    assert out["env"]["threads"] == 1 and out["env"]["torch"] == torch.__version__
    (entry,) = out["targets"]
    assert entry["size"] == [33, 33] and entry["batch"] == 2
    sets = entry["sets"]
    assert list(sets) == ["fp32", "bf16", "bf16+cl"]
    base = sets["fp32"]
    for r in sets.values():
        assert r["data"] == "synthetic" and r["compile_s"] is None
        assert r["images_per_s"] == pytest.approx(2 / r["time_s"])
        assert r["speedup"] == pytest.approx(base["time_s"] / r["time_s"])
        assert r["peak_bytes"] > 0
        assert r["memory_ratio"] == pytest.approx(r["peak_bytes"] / base["peak_bytes"])
        assert set(r["first_loss"]) == {"loss", "loss_main", "loss_aux"}
        # Same weights, batch and dropout masks: bf16 moves the loss by ~1e-4.
        assert abs(r["loss_rel_diff"]) < 5e-3, r["first_loss"]
    assert base["loss_rel_diff"] == 0
    assert entry["loader"]["set"] == "fp32"
    assert entry["loader"]["data"].startswith("shapes, 16 images, 0 workers")


def test_train_benchmark_synthetic_loader_fallback(tmp_path) -> None:
    from ann.benchmarks.options import compose_train
    from ann.benchmarks.train import loader_dataset

    cfg = compose_train(
        "cityscapes_ann",
        [f"dataset.root={tmp_path / 'missing'}", "dataset.scale=[256,128]",
         "dataset.train.transforms.crop_size=[33,33]"],
    )  # fmt: skip
    dataset, text = loader_dataset(cfg, tmp_path / "tree")
    assert text == "synthetic 256x128 PNGs (cityscapes not on disk)" and len(dataset) == 8
    sample = dataset[(0, 0)]
    assert sample["image"].shape == (3, 33, 33) and sample["mask"].shape == (33, 33)
    assert int(sample["mask"][sample["mask"] != 255].max()) < 19


def test_infer_benchmark_tiny(monkeypatch, one_thread) -> None:
    from ann.benchmarks import infer

    monkeypatch.setattr(infer, "run_worker", _in_process(infer))
    out = infer.main(
        ["--device", "cpu", "--models", "ann_r18", "--size", "33x65", "--repeats", "1",
         "--warmup", "1", "--sets", "fp32,fp16,bf16+cl", "--threads", one_thread]
    )  # fmt: skip
    json.dumps(out)
    assert out["config"]["crop"] == [25, 25] and out["config"]["stride"] == [17, 17]
    by_mode = out["results"]["ann_r18"]
    assert set(by_mode) == {"whole", "slide"}
    for by_set in by_mode.values():
        base = by_set["fp32"]
        assert base["max_abs_diff"] == base["max_rel_diff"] == 0 and base["argmax_agree"] == 1
        fp16 = by_set["fp16"]  # skipped with its reason where oneDNN lacks fp16
        assert "skipped" in fp16 and "--cpu-fp16" in fp16["skipped"] or fp16["time_s"] > 0
        r = by_set["bf16+cl"]
        assert r["speedup"] == pytest.approx(base["time_s"] / r["time_s"])
        if base["peak_bytes"] > 0:  # in-process at this size the peak can be lost in noise
            assert r["memory_ratio"] == pytest.approx(r["peak_bytes"] / base["peak_bytes"])
        else:
            assert r["memory_ratio"] is None
        # Random weights give near-tied classes: bf16 flips only a few pixels.
        assert r["argmax_agree"] > 0.9 and r["max_rel_diff"] < 0.05


def test_benchmark_worker_subprocess(tmp_path) -> None:
    """A measurement in its own process, with the malloc setting the peak relies on."""
    from ann.benchmarks.options import run_worker

    spec = {"device": "cpu", "threads": 1, "size": [33, 65], "crop": [25, 25],
            "stride": [17, 17], "repeats": 1, "warmup": 1, "compile_mode": "default", "compile_cache": False,
            "overrides": [], "model": "ann_r18", "mode": "whole", "set": "bf16+cl",
            "out": str(tmp_path / "logits.pt")}  # fmt: skip
    r = run_worker("ann.benchmarks.infer", spec, threads=1, timeout=120)
    assert "skipped" not in r, r
    assert r["time_s"] > 0 and r["peak_bytes"] > 0 and r["compile_s"] is None
    assert torch.load(tmp_path / "logits.pt").shape == (1, 19, 33, 65)


@pytest.mark.slow
def test_train_benchmark_compile_set(shapes_root) -> None:
    """torch.compile through the trainer's step in a subprocess (minutes on 2 CPUs)."""
    from ann.benchmarks import train

    out = train.main(
        ["--device", "cpu", "--experiments", "demo", "--size", "33x33", "--batch", "2",
         "--iters", "2", "--sets", "fp32,bf16+cl+compile", "--no-loader", "--threads", "1",
         "--override", f"dataset.root={shapes_root}"]
    )  # fmt: skip
    sets = out["targets"][0]["sets"]
    r = sets["bf16+cl+compile"]
    assert "skipped" not in r, r
    assert len(r["warmup_s"]) == 2 and r["compile_s"] > 0
    assert abs(r["loss_rel_diff"]) < 5e-3, (r["first_loss"], sets["fp32"]["first_loss"])
