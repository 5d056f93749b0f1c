"""Non-local blocks (dense, APNB, AFNB, the ANN head; matmul vs SDPA): median
forward (eval) and forward+backward (train) time and peak memory above the
weights and inputs, each in its own worker, against dense non-local (matmul)."""

from __future__ import annotations

import functools
import itertools
import statistics

import torch
from torch import nn

from ann.benchmarks import harness

LABELS = {
    "nl_matmul": "Non-local (matmul)",
    "nl_sdpa": "Non-local (SDPA)",
    "apnb_matmul": "APNB (matmul)",
    "apnb_sdpa": "APNB (SDPA)",
    "afnb_matmul": "AFNB (matmul)",
    "afnb_sdpa": "AFNB (SDPA)",
    "ann_head": "ANN head (SDPA)",
}
CASES, BASELINE = tuple(LABELS), "nl_matmul"
INTS = {"repeats": 3, "warmup": 1, "channels": 2048, "key": 256, "value": 256}
FREE_BYTES = harness.proc_kib("/proc/meminfo", "MemAvailable") * 1024 or 1 << 40
OPTIONS = {
    "--sizes": dict(default="97x97,128x128,128x256", help="HxW feature maps"),
    "--cases": dict(default=",".join(CASES), help=f"subset of {','.join(CASES)}"),
    "--modes": dict(default="eval,train"),
    **{f"--{k}": dict(type=int, default=v) for k, v in INTS.items()},
    "--threads": dict(type=int, default=torch.get_num_threads()),
    "--device": dict(default="cuda" if torch.cuda.is_available() else "cpu"),
    "--max-mem-gib": dict(
        type=float,
        default=round(0.7 * FREE_BYTES / 2**30, 1),
        help="skip cases estimated above this (default 70%% of MemAvailable)",
    ),
}


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
    run = functools.partial(_step, case, module, inputs, train)
    times, peak, _ = harness.measure(run, spec["warmup"] + spec["repeats"], device, memory)
    return {"time_s": statistics.median(times[spec["warmup"] :]), "peak_bytes": peak}


def estimate_bytes(case: str, h: int, w: int, mode: str, channels: int) -> int:
    """A rough upper bound, used only to skip cases that cannot fit."""
    n, maps = h * w, 8 * channels * h * w * 4
    if case == "nl_matmul":
        return (2 if mode == "eval" else 4) * n * n * 4 + maps
    return 3 * maps if mode == "train" else maps


def main(argv: list[str]) -> dict:
    """Runs the cases, prints the table, returns {"config", "results"}."""
    args = harness.parse_args(argv, __name__, __doc__, OPTIONS)
    sizes, cases = [harness.parse_size(s) for s in args.sizes.split(",")], args.cases.split(",")
    shared = {k: getattr(args, k) for k in (*INTS, "device")}
    results = {}
    rows = [["size", "mode", "block", "time ms", "speedup", "peak MiB", "mem ratio"]]
    for (h, w), mode in itertools.product(sizes, args.modes.split(",")):
        by_case = results.setdefault(f"{h}x{w}", {}).setdefault(mode, {})
        for case in cases:
            need, limit = estimate_bytes(case, h, w, mode, args.channels), args.max_mem_gib
            spec = {**shared, "case": case, "size": [h, w], "mode": mode}
            by_case[case] = r = (
                {"skipped": f"needs ~{need / 2**30:.0f} GiB > --max-mem-gib {limit:g}"}
                if need > limit * 2**30
                else harness.run_worker(worker, spec, args.threads)
            )
            harness.log(f"{h}x{w} {mode:5s} {LABELS[case]:20s}", r)
        base = by_case.get(BASELINE, {})
        for case, r in by_case.items():
            row = [f"{h}x{w}", mode, LABELS[case]]
            if "skipped" in r:
                rows.append([*row, "-", "-", "-", r["skipped"]])
                continue
            time_ms, mib = f"{r['time_s'] * 1000:.0f}", f"{r['peak_bytes'] / 2**20:.0f}"
            speedup = harness.ratio(base.get("time_s"), r["time_s"])
            memory = harness.ratio(base.get("peak_bytes"), max(r["peak_bytes"], 1))
            rows.append([*row, time_ms, speedup, mib, memory])
    harness.print_table(
        f"heads: in {args.channels} -> out {args.channels}, key {args.key}, value {args.value}, "
        f"batch 1, {args.device}, {args.threads} threads, median of {args.repeats}; "
        f"ratios vs {LABELS[BASELINE]}",
        rows,
    )
    return {"config": vars(args), "results": results}
