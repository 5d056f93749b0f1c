"""Speed option sets, what ``train`` and ``infer`` compare: a precision
(``fp32``, ``bf16`` or ``fp16`` autocast) with optional ``+cl`` (channels_last)
and ``+compile``, e.g. ``bf16+cl+compile``; ``all`` is the 12 combinations
(docs/performance.md). Each set runs in its own worker; ratios are against fp32."""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Callable
from typing import NamedTuple

import torch

from ann.benchmarks import harness
from ann.speed import PRECISIONS, native_support

BASELINE = "fp32"
CPU_SETS = "fp32,bf16,fp16,fp32+cl,bf16+cl"
SET_COLUMNS = ["speedup", "peak MiB", "mem vs fp32", "compile s"]


class OptionSet(NamedTuple):
    """One combination of the speed options of :mod:`ann.speed`."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    @property
    def name(self) -> str:
        """Canonical spelling: precision[+cl][+compile]."""
        return self.precision + "+cl" * self.channels_last + "+compile" * self.compile

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32."""
        return PRECISIONS[self.precision]

    def trainer_overrides(self) -> list[str]:
        """The ``trainer.*`` Hydra overrides of this set that ``build_training`` reads
        (compiling is left to its caller)."""
        amp = ["trainer.amp=true", f"trainer.amp_dtype={self.precision}"]
        layout = f"trainer.channels_last={str(self.channels_last).lower()}"
        return [*(amp if self.dtype else ["trainer.amp=false"]), layout]

    @classmethod
    def parse(cls, text: str) -> OptionSet:
        """``bf16+cl+compile`` -> OptionSet("bf16", True, True); parts in any order."""
        precision, *flags = text.strip().split("+")
        unknown = set(flags) - {"cl", "compile"}
        if precision not in PRECISIONS or unknown or len(set(flags)) != len(flags):
            raise ValueError(
                f"option set {text!r}: expected PRECISION[+cl][+compile], "
                f"PRECISION one of {', '.join(PRECISIONS)}"
            )
        return cls(precision, "cl" in flags, "compile" in flags)


ALL_SETS = tuple(
    OptionSet(p, bool(cl), bool(c)).name
    for c, cl, p in itertools.product((0, 1), (0, 1), PRECISIONS)
)


def parse_sets(text: str) -> list[OptionSet]:
    """A comma list of option sets (or ``all``), duplicates dropped, order kept."""
    names = ALL_SETS if text.strip() == "all" else text.split(",")
    return list(dict.fromkeys(OptionSet.parse(n) for n in names if n.strip()))


def cpu_fp16_skip(opts: OptionSet, device: str, allow: bool) -> str | None:
    """Why fp16 autocast is left out on this CPU (no native fp16: oneDNN's reference
    kernels, ~10x slower than fp32), or None to run it."""
    if opts.precision == "fp16" and device == "cpu" and not allow:
        if not native_support(device, torch.float16)[0]:
            return "skipped: no native CPU fp16 (~10x slower); --cpu-fp16"
    return None


def start(spec: dict) -> tuple[torch.device, OptionSet, int]:
    """A worker's device, option set and warm-up count (a compile set at least 2).
    A compile set compiles cold (torch.compile's on-disk caches off) and draws
    random numbers from the eager RNG (the same dropout masks as fp32's)."""
    opts = OptionSet.parse(spec["set"])
    if opts.compile:
        from torch._inductor import config

        config.fallback_random = True
        torch.compiler.config.force_disable_caches = True
    return torch.device(spec["device"]), opts, max(spec["warmup"], 2 if opts.compile else 1)


def parse(
    argv: list[str], module: str, doc: str, runs: str, cpu_runs: int, extra: dict
) -> tuple[argparse.Namespace, dict, dict]:
    """The ``train`` / ``infer`` options (``--{runs}``: timed runs) with ``extra``,
    defaults filled per device; the environment; the fields every worker gets."""
    cpu = not torch.cuda.is_available()
    options = {
        "--device": dict(default="cpu" if cpu else "cuda", choices=["cpu", "cuda"]),
        "--sets": dict(help=f"comma list of option sets, or all (CPU {CPU_SETS}, CUDA all)"),
        f"--{runs}": dict(type=int, help=f"timed runs (CPU {cpu_runs}, CUDA 10)"),
        "--warmup": dict(type=int, help="untimed first runs (CPU 1, CUDA 3)"),
        "--compile-mode": dict(default="default"),
        "--threads": dict(type=int, default=torch.get_num_threads()),
        "--cpu-fp16": dict(action="store_true", help="run fp16 on a CPU without native fp16"),
        "--override": dict(action="append", default=[], help="Hydra override, repeatable"),
        "--timeout": dict(type=float, help="seconds per set before it counts as failed"),
    }
    args = harness.parse_args(argv, module, doc, {**options, **extra})
    on_cpu = args.device == "cpu"
    args.sets = args.sets or (CPU_SETS if on_cpu else "all")
    setattr(args, runs, getattr(args, runs) or (cpu_runs if on_cpu else 10))
    args.warmup = args.warmup if args.warmup is not None else (1 if on_cpu else 3)
    if args.warmup < 1:
        sys.exit("error: --warmup must be at least 1 (the peak is taken after it)")
    keys = ("device", runs, "warmup", "compile_mode")
    job = {**{k: getattr(args, k) for k in keys}, "overrides": args.override}
    return args, harness.environment(args.device, args.threads), job


def run_sets(fn: Callable[[dict], dict], job: dict, args: argparse.Namespace, label: str) -> dict:
    """{set name: ``fn({**job, "set": name})`` in a worker} for ``args.sets``."""
    results = {}
    for opts in parse_sets(args.sets):
        skip = cpu_fp16_skip(opts, args.device, args.cpu_fp16)
        spec = {**job, "set": opts.name}
        r = {"skipped": skip} if skip else harness.run_worker(fn, spec, args.threads, args.timeout)
        results[opts.name] = r
        harness.log(label, f"{opts.name}:", r)
    return results


def set_cells(r: dict, base: dict | None) -> list[str]:
    """ms, img/s and :data:`SET_COLUMNS` of ``r``; adds its ratios to fp32's ``base``."""
    if "skipped" in r:
        return ["-"] * (2 + len(SET_COLUMNS))
    base = base if base and "skipped" not in base else None
    r["speedup"] = base["time_s"] / r["time_s"] if base else None
    has_peak = base is not None and base["peak_bytes"] > 0
    r["memory_ratio"] = r["peak_bytes"] / base["peak_bytes"] if has_peak else None
    ms, mib = f"{r['time_s'] * 1000:.0f}", f"{r['peak_bytes'] / 2**20:.0f}"
    speedup = harness.ratio(base and base["time_s"], r["time_s"])
    memory = harness.ratio(r["peak_bytes"], base and base["peak_bytes"])
    compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.0f}"
    return [ms, f"{r['images_per_s']:.2f}", speedup, mib, memory, compile_s]


def print_sets_table(
    args: argparse.Namespace, env: dict, what: str, runs: str, note: str, rows: list
) -> None:
    """The table of a ``train`` / ``infer`` run; records the load average at its end."""
    env["loadavg_end"] = list(os.getloadavg())
    load = ", ".join(f"{v:.1f}" for v in env["loadavg"])
    harness.print_table(
        f"{what}; {args.device}, {env['device_name']}, torch {env['torch']}, {env['threads']} "
        f"threads, load average {load} (of {env['cpu_count']} CPUs) at start; median of {runs} "
        f"after {args.warmup} warm-up (compile sets at least 2); ratios vs {BASELINE} eager "
        f"(speedup: higher is faster; mem: peak / fp32's); {note}",
        rows,
    )
