"""python tools/benchmark.py heads [--sizes 97x97,128x128,128x256] [--repeats 3] ...

Dense non-local (matmul, SDPA), APNB (matmul, SDPA), AFNB and the whole ANN
head: median time of forward (eval, no_grad) and forward+backward (train) and
peak memory above the weights and inputs, each (case, size, mode) in its own
worker, with ratios against dense non-local (matmul).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys

import torch
from torch import nn

from ann.benchmarks import harness

CASES = ("nl_matmul", "nl_sdpa", "apnb_matmul", "apnb_sdpa", "afnb_matmul", "afnb_sdpa", "ann_head")
LABELS = dict(
    zip(
        CASES,
        [
            "Non-local (matmul)",
            "Non-local (SDPA)",
            "APNB (matmul)",
            "APNB (SDPA)",
            "AFNB (matmul)",
            "AFNB (SDPA)",
            "ANN head (SDPA)",
        ],
        strict=True,
    )
)
BASELINE = "nl_matmul"
SHARED = ("repeats", "warmup", "channels", "key", "value", "device")


def build(case: str, c: int, key: int, value: int) -> tuple[nn.Module, list[int]]:
    """The module (``c`` channels in and out) and the channel counts of its inputs."""
    from ann.models.heads import AFNB, APNB, ANNHead, NonLocal2d

    kind, _, impl = case.partition("_")
    if kind in ("nl", "apnb"):
        return (NonLocal2d if kind == "nl" else APNB)(c, c, key, value, attention=impl), [c]
    if kind == "afnb":
        return AFNB(c // 2, c, c, key, value, attention=impl), [c // 2, c]
    if case == "ann_head":
        return ANNHead([c // 2, c], 512, 19, key, value, in_index=(0, 1)), [c // 2, c]
    raise ValueError(f"unknown case {case!r}; expected one of {CASES}")


def _step(case: str, module: nn.Module, inputs: list[torch.Tensor], train: bool) -> None:
    """One forward (eval, no_grad) or forward + backward of ``out.sum()`` (train)."""
    with torch.set_grad_enabled(train):
        out = module(inputs) if case == "ann_head" else module(*inputs)
    if train:
        out.sum().backward()
        for t in [*module.parameters(), *inputs]:
            t.grad = None


def worker(spec: dict) -> dict:
    """One (case, HxW, mode) in this process: median seconds of ``repeats``
    runs after ``warmup``, and peak bytes above the weights and inputs."""
    torch.manual_seed(0)
    device, case, train = torch.device(spec["device"]), spec["case"], spec["mode"] == "train"
    module, in_ch = build(case, spec["channels"], spec["key"], spec["value"])
    module, (h, w) = module.to(device).train(train), spec["size"]
    inputs = [torch.randn(1, c, h, w, device=device, requires_grad=train) for c in in_ch]
    memory = harness.PeakMemory(device)
    runs = spec["warmup"] + spec["repeats"]
    times, peak, _ = harness.measure(
        lambda: _step(case, module, inputs, train), runs, device, memory
    )
    return {"time_s": statistics.median(times[spec["warmup"] :]), "peak_bytes": peak}


def profile(case: str, h: int, w: int, args: argparse.Namespace, rows: int = 15) -> dict:
    """Prints torch.profiler's table of one fwd+bwd (after a warm-up step);
    returns self CPU seconds per op."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    module, in_ch = build(case, args.channels, args.key, args.value)
    inputs = [torch.randn(1, c, h, w, requires_grad=True) for c in in_ch]
    _step(case, module.train(), inputs, train=True)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        _step(case, module, inputs, train=True)
    averages = prof.key_averages()
    print(f"{LABELS[case]} fwd+bwd at 1x{sum(in_ch)}x{h}x{w}, {args.threads} threads")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=rows))
    ranked = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return {e.key: e.self_cpu_time_total / 1e6 for e in ranked}


def estimate_bytes(case: str, h: int, w: int, mode: str, channels: int) -> int:
    """A rough upper bound, used only to skip cases that cannot fit."""
    n, maps = h * w, 8 * channels * h * w * 4
    if case == "nl_matmul":
        return (2 if mode == "eval" else 4) * n * n * 4 + maps
    return 3 * maps if mode == "train" else maps


def main(argv: list[str]) -> dict:
    """Runs the cases, prints the table, returns {"config", "results"}."""
    available = harness.proc_kib("/proc/meminfo", "MemAvailable") * 1024 or 1 << 40
    ints = [
        ("repeats", 3),
        ("warmup", 1),
        ("channels", 2048),
        ("key", 256),
        ("value", 256),
        ("threads", torch.get_num_threads()),
    ]
    args = harness.parse_args(
        argv,
        "benchmark.py heads",
        __doc__,
        [
            ("--sizes", dict(default="97x97,128x128,128x256", help="HxW feature maps")),
            ("--cases", dict(default=",".join(CASES), help=f"subset of {','.join(CASES)}")),
            ("--modes", dict(default="eval,train")),
            *((f"--{k}", dict(type=int, default=v)) for k, v in ints),
            ("--device", dict(default="cuda" if torch.cuda.is_available() else "cpu")),
            (
                "--max-mem-gib",
                dict(
                    type=float,
                    default=round(0.7 * available / 2**30, 1),
                    help="skip cases estimated above this (default 70%% of MemAvailable)",
                ),
            ),
            (
                "--profile",
                dict(
                    action="store_true",
                    help="instead: torch.profiler table of the first case's fwd+bwd at each size",
                ),
            ),
        ],
    )
    sizes = [harness.parse_size(s) for s in args.sizes.split(",")]
    cases, modes = args.cases.split(","), args.modes.split(",")
    if args.profile:
        return {f"{h}x{w}": profile(cases[0], h, w, args) for h, w in sizes}
    results, shared = {}, {k: getattr(args, k) for k in SHARED}
    rows = [["size", "mode", "block", "time ms", "speedup", "peak MiB", "mem ratio"]]
    for (h, w), mode in itertools.product(sizes, modes):
        by_case = results.setdefault(f"{h}x{w}", {}).setdefault(mode, {})
        for case in cases:
            need, limit = estimate_bytes(case, h, w, mode, args.channels), args.max_mem_gib
            spec = {**shared, "case": case, "size": [h, w], "mode": mode}
            by_case[case] = r = (
                {"skipped": f"needs ~{need / 2**30:.0f} GiB > --max-mem-gib {limit:g}"}
                if need > limit * 2**30
                else harness.run_worker(worker, spec, args.threads)
            )
            print(f"  {h}x{w} {mode:5s} {LABELS[case]:20s} {r}", file=sys.stderr, flush=True)
        base = by_case.get(BASELINE, {})
        for case, r in by_case.items():
            cells = (
                ["-", "-", "-", r["skipped"]]
                if "skipped" in r
                else [
                    f"{r['time_s'] * 1000:.0f}",
                    harness.ratio(base.get("time_s"), r["time_s"]),
                    f"{r['peak_bytes'] / 2**20:.0f}",
                    harness.ratio(base.get("peak_bytes"), max(r["peak_bytes"], 1)),
                ]
            )
            rows.append([f"{h}x{w}", mode, LABELS[case], *cells])
    harness.print_table(
        f"heads: in {args.channels} -> out {args.channels}, key {args.key}, value {args.value}, "
        f"batch 1, {args.device}, {args.threads} threads, median of {args.repeats}; "
        f"ratios vs {LABELS[BASELINE]}",
        rows,
    )
    return {"config": vars(args), "results": results}
