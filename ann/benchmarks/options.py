"""What the ``train`` and ``infer`` benchmarks share: option sets, one
subprocess per measurement, peak memory, the environment record, tables.

An option set is a precision (``fp32``, ``bf16`` or ``fp16`` autocast) with
optional ``+cl`` (channels_last) and ``+compile`` (torch.compile), e.g.
``bf16+cl+compile``; ``all`` is the 12 combinations. The options themselves
are applied by :mod:`ann.speed`, as training and evaluation apply them.

Peak memory, measured over one more iteration after the timed ones (so that
torch.compile's compiler and cuDNN's autotuner are not counted, and the
timing runs with the allocator as training has it):

- CUDA: ``torch.cuda.max_memory_allocated`` (live tensors: weights, gradients,
  optimizer state, activations, workspaces);
- CPU: the peak resident set (``VmHWM``, reset through /proc/self/clear_refs)
  minus the resident set before the model was built (its code already
  imported), with glibc then told to hand every allocation of 64 KiB or more
  back to the OS when it is freed (``mallopt(M_MMAP_THRESHOLD)`` and
  ``malloc_trim``, as ann.benchmarks.heads does through the environment), so
  that the figure is what the measured work holds at its peak (weights,
  gradients, optimizer state, activations, oneDNN scratch and kernels), not
  what the allocator kept from before. It is set only for that iteration:
  mapping and unmapping every large tensor costs page faults that would slow
  the timed ones. A compiled model's retained compiler state (generated
  code, caches) counts on the CPU: it is resident memory of a run with that
  option. DataLoader workers are other processes and are not counted.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from ann.speed import PRECISIONS

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
BASELINE = "fp32"


@dataclass(frozen=True)
class OptionSet:
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

    @classmethod
    def parse(cls, text: str) -> OptionSet:
        """``bf16+cl+compile`` -> OptionSet("bf16", True, True); parts in any order."""
        precision, *flags = text.strip().split("+")
        unknown = set(flags) - {"cl", "compile"}
        if precision not in PRECISIONS or unknown or len(set(flags)) != len(flags):
            raise ValueError(
                f"option set {text!r}: expected PRECISION[+cl][+compile], PRECISION one of "
                f"{', '.join(PRECISIONS)}"
            )
        return cls(precision, "cl" in flags, "compile" in flags)


ALL_SETS = tuple(
    OptionSet(p, cl, c).name for c, cl, p in itertools.product((0, 1), (0, 1), PRECISIONS)
)


def parse_sets(text: str) -> list[OptionSet]:
    """A comma list of option sets (or ``all``), duplicates dropped, order kept."""
    names = ALL_SETS if text.strip() == "all" else text.split(",")
    sets = [OptionSet.parse(n) for n in names if n.strip()]
    return list(dict.fromkeys(sets))


def cpu_fp16_skip(opts: OptionSet, device: str, allow: bool) -> str | None:
    """Why fp16 autocast is left out on this CPU, or None to run it.

    Without native fp16 (AVX512-FP16 or AMX-FP16), oneDNN's fp16 convolutions
    fall back to slow reference kernels: ANN R-18's demo iteration took ~10x
    its fp32 time on the AVX512-BF16 EPYC these figures were first taken on.
    """
    if opts.precision != "fp16" or device != "cpu" or allow:
        return None
    native = getattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", None)
    if native is not None and native():
        return None
    return "skipped: no native CPU fp16 (~10x slower); --cpu-fp16"


def cold_compile(cached: bool) -> None:
    """Unless ``cached``, keeps torch.compile from its on-disk caches (inductor's
    FX graph and kernel caches persist between runs), so that "compile s" is
    what a first run on a machine pays, whatever ran before."""
    if not cached:
        torch.compiler.config.force_disable_caches = True


def compose_train(experiment: str | None, overrides: list[str]) -> DictConfig:
    """configs/train.yaml with ``experiment=...`` and ``overrides``, resolved
    as tools/train.py composes it."""
    from hydra import compose, initialize_config_dir

    extra = [f"experiment={experiment}"] if experiment else []
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", [*extra, *overrides])


def parse_size(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> (512, 1024)."""
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakMemory:
    """Peak memory of a window of work (see the module docstring).

    Create it before the model is built; call :meth:`reset` when the measured
    window starts and :meth:`peak` when it ends.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        if not self.cuda:
            _release_freed_memory(pin_threshold=False)
        self.base = 0 if self.cuda else _status_kib("VmRSS") * 1024

    def reset(self) -> None:
        """Starts the window: the peak so far is forgotten."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        _release_freed_memory(pin_threshold=os.environ.get("ANN_BENCH_WORKER") == "1")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # VmHWM := VmRSS
        except OSError:
            pass  # not Linux, or not allowed: the peak then covers the warm-up too

    def peak(self) -> int:
        """Bytes at the window's peak (CUDA: allocated; CPU: resident above the base)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        return max(_status_kib("VmHWM") * 1024 - self.base, 0)


def _release_freed_memory(pin_threshold: bool) -> None:
    """Gives what glibc's heap holds free back to the OS; with ``pin_threshold``
    glibc from now on maps every allocation of 64 KiB or more on its own and
    unmaps it when freed. Pinned only in a benchmark's own worker process
    (``ANN_BENCH_WORKER``): it would slow everything the process does later."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: the peak then includes what the allocator kept
    if pin_threshold:
        libc.mallopt(-3, 65536)  # M_MMAP_THRESHOLD; fixing it also stops glibc raising it
    libc.malloc_trim(0)


def sync(device: torch.device) -> None:
    """Waits for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_worker(module: str, spec: dict, threads: int, timeout: float | None = None) -> dict:
    """``python -m module --worker JSON`` in a fresh process (compile and
    autocast state cannot leak between sets); its last stdout line is the
    result. A failure or timeout is returned as ``{"skipped": reason}``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), ANN_BENCH_WORKER="1")
    cmd = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"failed: over --timeout {timeout:g} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["killed"])[-1]
        return {"skipped": f"failed (rc {proc.returncode}): {tail[-160:]}"}
    return json.loads(lines[-1])


def environment(device: str, threads: int) -> dict:
    """Where the figures were taken: device, versions, threads, load."""
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
    }
    if device == "cuda":
        env["device_name"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    else:
        env["device_name"] = env["cpu"]
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(env: dict) -> str:
    """One line for the table's caption."""
    load = ", ".join(f"{v:.1f}" for v in env["loadavg"])
    return (
        f"{env['device_name']}, torch {env['torch']}, {env['threads']} threads, "
        f"load average {load} (of {env['cpu_count']} CPUs) at start"
    )


def ratio(value: float | None, base: float | None) -> str:
    """``value / base`` as "1.23x", "-" when either is missing."""
    if value is None or not base:
        return "-"
    return f"{value / base:.2f}x"


def print_table(rows: list[list[str]]) -> None:
    """Left-aligned columns; the first row is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


__all__ = [
    "ALL_SETS",
    "BASELINE",
    "OptionSet",
    "PeakMemory",
    "cold_compile",
    "compose_train",
    "cpu_fp16_skip",
    "describe",
    "environment",
    "parse_sets",
    "parse_size",
    "print_table",
    "ratio",
    "run_worker",
    "sync",
]


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``train`` and ``infer`` share: device, precision sets'
    compile mode and cache, threads, fp16 on CPU, Hydra overrides, timeout."""
    cuda = torch.cuda.is_available()
    p.add_argument("--device", default="cuda" if cuda else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--sets", help="comma list of option sets, or all")
    p.add_argument("--compile-mode", default="default")
    p.add_argument(
        "--compile-cache",
        action="store_true",
        help="let torch.compile use its on-disk caches (default: a cold compile)",
    )
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--cpu-fp16", action="store_true", help="run fp16 on a CPU without native fp16")
    p.add_argument("--override", action="append", default=[], help="Hydra override, repeatable")
    p.add_argument("--timeout", type=float, help="seconds per set before it counts as failed")
    p.add_argument("--worker", help=argparse.SUPPRESS)


def timings(times: list[float], warmup: int, per_run: int, peak: int, compiled: bool) -> dict:
    """The timing fields of a worker's result: median seconds of the runs after
    ``warmup``, images/s (``per_run`` images a run), peak bytes, the raw times
    and, for a compiled set, the warm-up time beyond that many median runs."""
    median = statistics.median(times[warmup:])
    return {
        "time_s": median,
        "images_per_s": per_run / median,
        "peak_bytes": peak,
        "warmup_s": times[:warmup],
        "times_s": times[warmup:],
        "compile_s": sum(times[:warmup]) - warmup * median if compiled else None,
    }
