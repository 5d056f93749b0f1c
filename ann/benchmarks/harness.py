"""What every benchmark shares: config composition, the worker process, peak
memory, timing, the environment record, the command line and the table
(docs/performance.md: "The harness", "How peak memory is measured")."""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig

from ann.config.compose import compose  # configs/<name>.yaml with Hydra overrides


def model_config(model: str, *overrides: str) -> DictConfig:
    """The training config of ``configs/model/<model>`` on Cityscapes (19 classes)."""
    return compose("train", [f"model={model}", "dataset=cityscapes", *overrides])


def build_model(cfg: DictConfig) -> torch.nn.Module:
    """``cfg.model`` with random weights (no ImageNet download), in train mode."""
    from ann.hub.loading import load_model

    return load_model(cfg.model).train()


def run_worker(
    fn: Callable[[dict], dict],
    spec: dict,
    threads: int,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """``fn(spec)`` (module-level, JSON in and out) in a fresh process (``env``
    added to its environment), or here with ``ANN_BENCH_IN_PROCESS=1``; a
    failure comes back as ``{"skipped": reason}``."""
    if os.environ.get("ANN_BENCH_IN_PROCESS") == "1":
        return fn(spec)
    env = dict(os.environ, **(env or {}), OMP_NUM_THREADS=str(threads), ANN_BENCH_WORKER="1")
    target = f"{fn.__module__}:{fn.__qualname__}"
    cmd = [sys.executable, "-m", "ann.benchmarks", target, json.dumps(spec)]  # see __main__.py
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"failed: over --timeout {timeout:g} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["killed"])[-1]
        return {"skipped": f"failed (rc {proc.returncode}): {tail[-160:]}"}
    return json.loads(lines[-1])


def proc_field(path: str, field: str) -> str | None:
    """The value after ``field:`` in a /proc file, or None."""
    try:
        with open(path) as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith(field)), None)
    except OSError:
        return None


def proc_kib(path: str, field: str) -> int:
    """A KiB field of a /proc file (``VmRSS`` of /proc/self/status); 0 if absent."""
    return int((proc_field(path, field + ":") or "0 kB").split()[0])


def _release_freed_memory(pin_threshold: bool) -> None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: the peak then includes what the allocator kept
    if pin_threshold:
        libc.mallopt(-3, 65536)  # M_MMAP_THRESHOLD; fixing it also stops glibc raising it
    libc.malloc_trim(0)


class PeakMemory:
    """Peak bytes of a window of work above a base (docs/performance.md): made once
    what is not to be counted exists, :meth:`reset` as the window starts."""

    def __init__(self, device: torch.device) -> None:
        self.cuda, self.device = device.type == "cuda", device
        if self.cuda:
            torch.cuda.synchronize(device)
            self.base = torch.cuda.memory_allocated(device)
        else:
            _release_freed_memory(pin_threshold=False)
            self.base = proc_kib("/proc/self/status", "VmRSS") * 1024

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
        """Bytes at the window's peak above the base."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return max(int(torch.cuda.max_memory_allocated(self.device)) - self.base, 0)
        return max(proc_kib("/proc/self/status", "VmHWM") * 1024 - self.base, 0)


def measure(
    run: Callable[[], Any], runs: int, device: torch.device, memory: PeakMemory | None = None
) -> tuple[list[float], int | None, Any]:
    """Seconds of each of ``runs`` calls of ``run``; with ``memory``, one more call
    for the peak alone, whose peak bytes and result come back too."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    if memory is None:
        return times, None, None
    memory.reset()
    out = run()
    return times, memory.peak(), out  # peak() waits for the device


def median_after(run: Callable[[], Any], warmup: int, runs: int, device: torch.device) -> float:
    """Median seconds of ``runs`` calls of ``run`` after ``warmup`` untimed ones."""
    return statistics.median(measure(run, warmup + runs, device)[0][warmup:])


def timings(times: list[float], warmup: int, per_run: int, peak: int, compiled: bool) -> dict:
    """A worker's timing fields: median seconds after ``warmup``, images/s, peak,
    the raw times and, when ``compiled``, the warm-up beyond that many medians."""
    median = statistics.median(times[warmup:])
    return {
        "time_s": median,
        "images_per_s": per_run / median,
        "peak_bytes": peak,
        "warmup_s": times[:warmup],
        "times_s": times[warmup:],
        "compile_s": sum(times[:warmup]) - warmup * median if compiled else None,
    }


def environment(device: str, threads: int) -> dict:
    """Device, versions, threads and load average."""
    cpu = proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown"
    cuda = device == "cuda"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "device_name": torch.cuda.get_device_name() if cuda else cpu,
        **({"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()} if cuda else {}),
    }


def parse_args(argv: list[str], module: str, doc: str, options: dict) -> argparse.Namespace:
    """``argv`` parsed with ``options`` ({flag: add_argument kwargs}) for the
    subcommand of ``module`` (its ``__name__``), ``doc`` the ``--help`` text."""
    prog = "benchmark.py " + module.rsplit(".", 1)[-1]
    formatter = argparse.RawDescriptionHelpFormatter  # keeps the docstring's lines
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=formatter)
    for flag, kwargs in options.items():
        p.add_argument(flag, **kwargs)
    return p.parse_args(argv)


def parse_size(text: str) -> list[int]:
    """``"512x1024"`` -> [512, 1024]."""
    return [int(v) for v in text.lower().split("x")]


def log(*parts: Any) -> None:
    """A progress line on stderr (the table goes to stdout)."""
    print(" ", *parts, file=sys.stderr, flush=True)


def ratio(value: float | None, base: float | None) -> str:
    """``value / base`` as "1.23x"; "-" when either is missing."""
    return "-" if value is None or not base else f"{value / base:.2f}x"


def print_table(caption: str, rows: list[list[str]]) -> None:
    """The caption, then left-aligned columns; ``rows[0]`` is the header."""
    print(caption)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
