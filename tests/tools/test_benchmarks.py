"""The benchmark code paths at toy sizes, and the full-size memory check (slow)."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from ann.benchmarks import harness, heads, model
from helpers import compose_cfg


@pytest.mark.parametrize("case", ["nl_matmul", "apnb_sdpa", "afnb_matmul", "ann_head"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_heads_worker_toy(case: str, mode: str) -> None:
    spec = {
        "case": case,
        "size": [9, 11],
        "mode": mode,
        "warmup": 0,
        "repeats": 1,
        "channels": 32,
        "key": 8,
        "value": 8,
        "device": "cpu",
    }
    r = heads.worker(spec)
    assert set(r) == {"time_s", "peak_bytes"} and r["time_s"] > 0 and r["peak_bytes"] >= 0


def test_heads_table_and_json(monkeypatch, capsys) -> None:
    """The whole subcommand, workers in this process: JSON keys and ratio columns."""
    monkeypatch.setenv("ANN_BENCH_IN_PROCESS", "1")
    argv = "--sizes 9x11 --cases nl_matmul,apnb_sdpa --modes eval --channels 32 --key 8 --value 8"
    out = heads.main([*argv.split(), "--repeats", "1", "--device", "cpu"])
    json.dumps(out)
    assert set(out) == {"config", "results"} and out["config"]["channels"] == 32
    assert set(out["results"]["9x11"]["eval"]) == {"nl_matmul", "apnb_sdpa"}
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["size", "mode", "block", "time"]
    assert lines[2].split()[5] == "1.00x"  # the baseline's speedup against itself


def test_cli_help_lists_subcommands_and_json(capsys) -> None:
    from ann.benchmarks import SUBCOMMANDS
    from ann.commands.benchmark import main

    assert (
        main(["--help"]) == 0
        and "{heads,model,data,eval,train,infer,predict,compare}" in capsys.readouterr().out
    )
    assert main([]) == 2
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0 and "--json PATH" in capsys.readouterr().out, name


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


def test_peak_memory_counts_one_allocation() -> None:
    """The CPU method sees a 64 MiB tensor written in the window, and not what
    existed before it started."""
    device = torch.device("cpu")
    before = torch.ones(16 * 2**20)  # 64 MiB, held since before the base
    memory = harness.PeakMemory(device)
    times, peak, out = harness.measure(lambda: torch.ones(16 * 2**20), 1, device, memory)
    assert len(times) == 1 and out.numel() == before.numel()
    assert 60 * 2**20 < peak < 200 * 2**20, peak


def test_compose_finds_configs_from_the_package() -> None:
    cfg = harness.compose("train", ["experiment=demo"])
    assert cfg.trainer.batch_size > 0 and "decode_head" in cfg.model


# -- train and infer (issue #11): option sets side by side ---------------------

TINY_TRAIN = "--device cpu --experiments demo --size 33x33 --batch 2"


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
def one_thread(monkeypatch):
    """Workers in this process (``ANN_BENCH_IN_PROCESS``: the tests check the
    figures' plumbing, test_benchmark_worker_subprocess the subprocess itself),
    with 1 thread: on 2 shared CPUs, 2 OpenMP threads that wait for each other
    slow a tiny model down several times."""
    monkeypatch.setenv("ANN_BENCH_IN_PROCESS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield "1"
    torch.set_num_threads(threads)


def test_train_benchmark_tiny(shapes_root, one_thread, monkeypatch) -> None:
    from ann.benchmarks import train
    from ann.engine import build

    built = []  # the parts each set trained with: the trainer's own build_training

    def spy(*args):
        built.append(build.build_training(*args))
        return built[-1]

    monkeypatch.setattr(train, "build_training", spy)

    argv = f"{TINY_TRAIN} --iters 1 --warmup 1 --sets fp32,bf16,bf16+cl --workers 0"
    overrides = [f"dataset.root={shapes_root}", "dataset.num_train=16", "dataset.num_val=6"]
    out = train.main(
        [*argv.split(), "--threads", one_thread, *(f"--override={o}" for o in overrides)]
    )
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
    assert [(p.amp_dtype, p.channels_last) for p in built] == [
        (None, False),
        (torch.bfloat16, False),
        (torch.bfloat16, True),
        (None, False),
    ]  # fp32, bf16, bf16+cl, then the loader row's fp32
    # warm-up, timed and peak iterations each stepped the poly schedule
    assert all(p.scheduler.last_epoch == 3 for p in built)
    assert entry["loader"]["set"] == "fp32"
    assert entry["loader"]["data"].startswith("shapes, 16 images, 0 workers")
    assert set(out) == {"config", "env", "targets"}
    assert set(entry) == {"experiment", "model", "size", "batch", "label", "sets", "loader"}
    assert set(base) == {
        "data",
        "size",
        "batch",
        "time_s",
        "images_per_s",
        "peak_bytes",
        "warmup_s",
        "times_s",
        "compile_s",
        "data_wait_s",
        "first_loss",
        "loss_rel_diff",
        "speedup",
        "memory_ratio",
    }


def test_train_benchmark_synthetic_loader_fallback(tmp_path) -> None:
    from ann.benchmarks.train import loader_dataset

    cfg = harness.compose(
        "train",
        [
            "experiment=cityscapes_ann",
            f"dataset.root={tmp_path / 'missing'}",
            "dataset.scale=[256,128]",
            "dataset.train.transforms.crop_size=[33,33]",
        ],
    )
    dataset, text = loader_dataset(cfg, tmp_path / "tree")
    assert text == "synthetic 256x128 PNGs (cityscapes not on disk)" and len(dataset) == 8
    sample = dataset[(0, 0)]
    assert sample["image"].shape == (3, 33, 33) and sample["mask"].shape == (33, 33)
    assert int(sample["mask"][sample["mask"] != 255].max()) < 19


def test_infer_benchmark_tiny(one_thread) -> None:
    from ann.benchmarks import infer

    argv = "--device cpu --models ann_r18 --size 33x65 --repeats 1 --warmup 1"
    out = infer.main([*argv.split(), "--sets", "fp32,fp16,bf16+cl", "--threads", one_thread])
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
    assert set(out) == {"config", "env", "results"}
    assert set(by_mode["whole"]["fp32"]) == {
        "time_s",
        "images_per_s",
        "peak_bytes",
        "warmup_s",
        "times_s",
        "compile_s",
        "max_abs_diff",
        "max_rel_diff",
        "argmax_agree",
        "speedup",
        "memory_ratio",
    }


def test_benchmark_worker_subprocess(tmp_path) -> None:
    """A measurement in its own process, with the malloc setting the peak relies on."""
    from ann.benchmarks.infer import worker

    spec = {
        "device": "cpu",
        "size": [33, 65],
        "crop": [25, 25],
        "stride": [17, 17],
        "repeats": 1,
        "warmup": 1,
        "compile_mode": "default",
        "overrides": [],
        "model": "ann_r18",
        "mode": "whole",
        "set": "bf16+cl",
        "out_dir": str(tmp_path),
    }
    r = harness.run_worker(worker, spec, threads=1, timeout=120)
    assert "skipped" not in r, r
    assert r["time_s"] > 0 and r["peak_bytes"] > 0 and r["compile_s"] is None
    assert torch.load(tmp_path / "bf16+cl.pt").shape == (1, 19, 33, 65)
    failed = harness.run_worker(worker, {**spec, "model": "no_such_model"}, threads=1)
    assert failed["skipped"].startswith("failed (rc 1)")


@pytest.mark.slow
def test_train_benchmark_compile_set(shapes_root) -> None:
    """torch.compile through the trainer's step in a subprocess (minutes on 2 CPUs)."""
    from ann.benchmarks import train

    argv = f"{TINY_TRAIN} --iters 2 --sets fp32,bf16+cl+compile --no-loader --threads 1"
    out = train.main([*argv.split(), f"--override=dataset.root={shapes_root}"])
    sets = out["targets"][0]["sets"]
    r = sets["bf16+cl+compile"]
    assert "skipped" not in r, r
    assert len(r["warmup_s"]) == 2 and r["compile_s"] > 0
    assert abs(r["loss_rel_diff"]) < 5e-3, (r["first_loss"], sets["fp32"]["first_loss"])
