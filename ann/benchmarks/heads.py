"""python tools/benchmark.py heads [--sizes 97x97,128x128,128x256] [--repeats 3] ...

Dense non-local (matmul, SDPA), APNB (matmul, SDPA), AFNB and the whole ANN
head at the reference efficiency-harness sizes: median time of forward (eval,
no_grad) and forward+backward (train), and peak memory, with ratios against
dense non-local (matmul).

Peak memory on CPU: each (case, size, mode) runs in a fresh subprocess with
glibc's mmap threshold pinned at 64 KiB (``MALLOC_MMAP_THRESHOLD_``), so every
tensor of any size is its own mapping, given back to the OS when freed; the
peak resident set (``VmHWM``, reset through /proc/self/clear_refs once the
inputs exist) minus the resident set at that moment is then the peak of what
the case allocated, oneDNN/BLAS scratch included, independent of PyTorch's
allocator and without a profiler's overhead. On CUDA it is
``torch.cuda.max_memory_allocated`` over the same window.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

CASES = ("nl_matmul", "nl_sdpa", "apnb_matmul", "apnb_sdpa", "afnb_matmul", "afnb_sdpa", "ann_head")
LABELS = {
    "nl_matmul": "Non-local (matmul)",
    "nl_sdpa": "Non-local (SDPA)",
    "apnb_matmul": "APNB (matmul)",
    "apnb_sdpa": "APNB (SDPA)",
    "afnb_matmul": "AFNB (matmul)",
    "afnb_sdpa": "AFNB (SDPA)",
    "ann_head": "ANN head (SDPA)",
}
BASELINE = "nl_matmul"


def build(case: str, channels: int, key: int, value: int) -> tuple[nn.Module, list[int]]:
    """The module and the channel counts of its inputs."""
    from ann.models.heads import AFNB, APNB, ANNHead, NonLocal2d

    kind, _, impl = case.partition("_")
    if kind == "nl":
        return NonLocal2d(channels, channels, key, value, attention=impl), [channels]
    if kind == "apnb":
        return APNB(channels, channels, key, value, attention=impl), [channels]
    if kind == "afnb":
        low = channels // 2
        return AFNB(low, channels, channels, key, value, attention=impl), [low, channels]
    if case == "ann_head":
        head = ANNHead([channels // 2, channels], 512, 19, key, value, in_index=(0, 1))
        return head, [channels // 2, channels]
    raise ValueError(f"unknown case {case!r}; expected one of {CASES}")


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def worker(case: str, h: int, w: int, mode: str, repeats: int, args: argparse.Namespace) -> dict:
    """Runs one (case, size, mode) in this process; returns time and peak."""
    torch.manual_seed(0)
    cuda = args.device == "cuda"
    device = torch.device(args.device)
    module, in_ch = build(case, args.channels, args.key, args.value)
    module = module.to(device).train(mode == "train")
    train = mode == "train"
    inputs = [torch.randn(1, c, h, w, device=device, requires_grad=train) for c in in_ch]

    def step() -> None:
        if train:
            out = module(inputs) if case == "ann_head" else module(*inputs)
            out.sum().backward()
            for t in [*module.parameters(), *inputs]:
                t.grad = None
        else:
            with torch.no_grad():
                module(inputs) if case == "ann_head" else module(*inputs)
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident set
        except OSError:
            pass
        base = _rss_kib("VmRSS") * 1024
    times = []
    for i in range(args.warmup + repeats):
        t0 = time.perf_counter()
        step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if cuda else _rss_kib("VmHWM") * 1024
    return {"time_s": statistics.median(times), "peak_bytes": max(peak - base, 0)}


def profile(case: str, h: int, w: int, args: argparse.Namespace, rows: int = 15) -> dict:
    """Prints torch.profiler's table of one fwd+bwd (after a warm-up step);
    returns self CPU seconds per op."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    module, in_ch = build(case, args.channels, args.key, args.value)
    module.train()
    inputs = [torch.randn(1, c, h, w, requires_grad=True) for c in in_ch]

    def step() -> None:
        out = module(inputs) if case == "ann_head" else module(*inputs)
        out.sum().backward()

    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    averages = prof.key_averages()
    print(f"{LABELS[case]} fwd+bwd at 1x{sum(in_ch)}x{h}x{w}, {args.threads} threads")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=rows))
    ranked = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return {e.key: e.self_cpu_time_total / 1e6 for e in ranked}


def estimate_bytes(case: str, h: int, w: int, mode: str, channels: int) -> int:
    """A rough upper bound, used only to skip cases that cannot fit."""
    n = h * w
    maps = 8 * channels * n * 4
    if case == "nl_matmul":
        return (2 if mode == "eval" else 4) * n * n * 4 + maps
    return 3 * maps if mode == "train" else maps


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 40


def run_case(case: str, h: int, w: int, mode: str, args: argparse.Namespace) -> dict:
    """One measurement in a fresh subprocess (see the module docstring)."""
    need, limit = estimate_bytes(case, h, w, mode, args.channels), args.max_mem_gib * 2**30
    if need > limit:
        return {"skipped": f"needs ~{need / 2**30:.0f} GiB > --max-mem-gib {args.max_mem_gib:g}"}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, "-m", "ann.benchmarks.heads", "--worker", case, f"{h}x{w}", mode]
    cmd += [*sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in _shared(args).items()), [])]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["killed"])[-1]
        return {"skipped": f"failed (rc {proc.returncode}): {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _shared(args: argparse.Namespace) -> dict:
    keys = ("repeats", "warmup", "channels", "key", "value", "device", "threads")
    return {k: getattr(args, k) for k in keys}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmark.py heads", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="97x97,128x128,128x256", help="HxW feature maps")
    p.add_argument("--cases", default=",".join(CASES), help=f"subset of {','.join(CASES)}")
    p.add_argument("--modes", default="eval,train")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--channels", type=int, default=2048)
    p.add_argument("--key", type=int, default=256)
    p.add_argument("--value", type=int, default=256)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--max-mem-gib",
        type=float,
        default=round(0.7 * _available_bytes() / 2**30, 1),
        help="skip cases estimated above this (default 70%% of MemAvailable)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead: torch.profiler table of the first case's fwd+bwd at each size",
    )
    p.add_argument("--worker", nargs=3, metavar=("CASE", "HxW", "MODE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _fmt(r: dict, base: dict | None) -> list[str]:
    if "skipped" in r:
        return ["-", "-", "-", "-"]
    t, m = r["time_s"], r["peak_bytes"] / 2**20
    if base is None or "skipped" in base:
        return [f"{t * 1000:.0f}", "-", f"{m:.0f}", "-"]
    tr = base["time_s"] / t
    mr = base["peak_bytes"] / max(r["peak_bytes"], 1)
    return [f"{t * 1000:.0f}", f"{tr:.1f}x", f"{m:.0f}", f"{mr:.1f}x"]


def main(argv: list[str]) -> dict:
    """Runs the cases, prints the table, returns {"config", "results"}."""
    args = parse(argv)
    if args.worker:
        torch.set_num_threads(args.threads)
        case, hw, mode = args.worker
        h, w = (int(v) for v in hw.split("x"))
        print(json.dumps(worker(case, h, w, mode, args.repeats, args)))
        return {}
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    cases, modes = args.cases.split(","), args.modes.split(",")
    if args.profile:
        return {f"{h}x{w}": profile(cases[0], h, w, args) for h, w in sizes}
    results: dict = {}
    for h, w in sizes:
        for mode in modes:
            for case in cases:
                r = run_case(case, h, w, mode, args)
                results.setdefault(f"{h}x{w}", {}).setdefault(mode, {})[case] = r
                print(f"  {h}x{w} {mode:5s} {LABELS[case]:20s} {r}", file=sys.stderr, flush=True)
    header = ["size", "mode", "block", "time ms", "speedup", "peak MiB", "mem ratio"]
    rows = [header]
    for size, by_mode in results.items():
        for mode, by_case in by_mode.items():
            base = by_case.get(BASELINE)
            for case, r in by_case.items():
                note = f"  ({r['skipped']})" if "skipped" in r else ""
                rows.append([size, mode, LABELS[case], *_fmt(r, base)])
                rows[-1][-1] += note
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(
        f"heads: in {args.channels} -> out {args.channels}, key {args.key}, value {args.value}, "
        f"batch 1, {args.device}, {args.threads} threads, median of {args.repeats}; "
        f"ratios vs {LABELS[BASELINE]}"
    )
    for r in rows:
        print("  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)))
    return {"config": {k: v for k, v in vars(args).items() if k != "worker"}, "results": results}


if __name__ == "__main__":
    main(sys.argv[1:])
