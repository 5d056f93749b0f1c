"""Speed option sets, what the ``train`` and ``infer`` benchmarks compare: a
precision (``fp32``, ``bf16`` or ``fp16`` autocast) with optional ``+cl``
(channels_last) and ``+compile`` (torch.compile), e.g. ``bf16+cl+compile``;
``all`` is the 12 combinations. :mod:`ann.speed` applies them, as training
and evaluation do. Each set runs in its own worker; ratios are against fp32.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from typing import NamedTuple

import torch

from ann.benchmarks.harness import parse_args, ratio, run_worker
from ann.speed import PRECISIONS

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

    def trainer_overrides(self, compile_mode: str) -> list[str]:
        """``trainer.*`` Hydra overrides for a training run with this set
        (``trainer.amp=true``: the dtype even where the device emulates it)."""
        amp = ["trainer.amp=true", f"trainer.amp_dtype={self.precision}"]
        return [
            *(amp if self.dtype else ["trainer.amp=false"]),
            f"trainer.channels_last={str(self.channels_last).lower()}",
            f"trainer.compile={str(self.compile).lower()}",
            f"trainer.compile_mode={compile_mode}",
        ]

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
    """Why fp16 autocast is left out on this CPU, or None to run it: without
    native fp16 (AVX512-FP16, AMX-FP16) oneDNN's fp16 convolutions fall back to
    reference kernels, ~10x slower than fp32 for ANN R-18's demo iteration."""
    if opts.precision != "fp16" or device != "cpu" or allow:
        return None
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", None)
    if native is not None and native():
        return None
    return "skipped: no native CPU fp16 (~10x slower); --cpu-fp16"


def start(spec: dict) -> tuple[torch.device, OptionSet, int]:
    """A worker's device, option set and warm-up count (a compile set at least
    2: the first compiles, the second catches a recompile). Unless
    ``compile_cache``, torch.compile keeps off its on-disk caches, so that
    "compile s" is what a first run on a machine pays, whatever ran before."""
    opts = OptionSet.parse(spec["set"])
    if opts.compile and not spec["compile_cache"]:
        torch.compiler.config.force_disable_caches = True
    return torch.device(spec["device"]), opts, max(spec["warmup"], 2 if opts.compile else 1)


def parse(
    argv: list[str], prog: str, doc: str, runs: str, cpu_runs: int, extra: list
) -> argparse.Namespace:
    """The ``train`` / ``infer`` command line: the shared options, ``--{runs}``
    (the timed count) and ``extra`` ``(flag, kwargs)`` pairs; fills the
    device-dependent defaults of sets, timed runs and warm-up."""
    cuda = torch.cuda.is_available()
    args = parse_args(
        argv,
        prog,
        doc,
        [
            ("--device", dict(default="cuda" if cuda else "cpu", choices=["cpu", "cuda"])),
            ("--sets", dict(help=f"comma list of option sets, or all (CPU {CPU_SETS}, CUDA all)")),
            (f"--{runs}", dict(type=int, help=f"timed runs (CPU {cpu_runs}, CUDA 10)")),
            ("--warmup", dict(type=int, help="untimed first runs (CPU 1, CUDA 3)")),
            ("--compile-mode", dict(default="default")),
            (
                "--compile-cache",
                dict(
                    action="store_true",
                    help="let torch.compile use its on-disk caches (default: a cold compile)",
                ),
            ),
            ("--threads", dict(type=int, default=torch.get_num_threads())),
            ("--cpu-fp16", dict(action="store_true", help="run fp16 on a CPU without native fp16")),
            ("--override", dict(action="append", default=[], help="Hydra override, repeatable")),
            ("--timeout", dict(type=float, help="seconds per set before it counts as failed")),
            *extra,
        ],
    )
    on_cpu = args.device == "cpu"
    args.sets = args.sets or (CPU_SETS if on_cpu else "all")
    setattr(args, runs, getattr(args, runs) or (cpu_runs if on_cpu else 10))
    args.warmup = args.warmup if args.warmup is not None else (1 if on_cpu else 3)
    if args.warmup < 1:
        sys.exit(f"{prog}: error: --warmup must be at least 1 (the peak is taken after it)")
    return args


def run_sets(fn: Callable[[dict], dict], job: dict, args: argparse.Namespace, label: str) -> dict:
    """{set name: ``fn({**job, "set": name})`` in a worker} for ``args.sets``."""
    results = {}
    for opts in parse_sets(args.sets):
        skip = cpu_fp16_skip(opts, args.device, args.cpu_fp16)
        spec = {**job, "set": opts.name}
        r = {"skipped": skip} if skip else run_worker(fn, spec, args.threads, args.timeout)
        results[opts.name] = r
        print(f"  {label} {opts.name}: {r}", file=sys.stderr, flush=True)
    return results


def set_cells(r: dict, base: dict | None) -> list[str]:
    """ms, img/s and :data:`SET_COLUMNS` of result ``r`` against ``base``
    (fp32's); adds ``speedup`` and ``memory_ratio`` to ``r``."""
    if "skipped" in r:
        return ["-"] * (2 + len(SET_COLUMNS))
    base = base if base and "skipped" not in base else None
    r["speedup"] = base["time_s"] / r["time_s"] if base else None
    has_peak = base is not None and base["peak_bytes"] > 0
    r["memory_ratio"] = r["peak_bytes"] / base["peak_bytes"] if has_peak else None
    compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.0f}"
    return [
        f"{r['time_s'] * 1000:.0f}",
        f"{r['images_per_s']:.2f}",
        ratio(base and base["time_s"], r["time_s"]),
        f"{r['peak_bytes'] / 2**20:.0f}",
        ratio(r["peak_bytes"], base and base["peak_bytes"]),
        compile_s,
    ]
