"""What every benchmark shares: config composition, the worker process, peak
memory, timing, the environment record, synthetic street scenes and the table.

Peak memory is taken over one more run after the timed ones, above what was
allocated when the :class:`PeakMemory` was made. CUDA: max_memory_allocated.
CPU: the peak resident set (VmHWM, reset through /proc/self/clear_refs), with
glibc told for that run only, in a worker process, to map every allocation of
64 KiB or more on its own and unmap it when freed, so that the figure is what
the work holds at its peak, not what the allocator kept; the timed runs go
without it (mapping every large tensor costs page faults).
"""

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def compose(name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """configs/<name>.yaml with Hydra ``overrides``, as the tools compose it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(name, list(overrides))


def run_worker(
    fn: Callable[[dict], dict], spec: dict, threads: int, timeout: float | None = None
) -> dict:
    """``fn(spec)`` (module-level, JSON in and out) in a fresh process, so that
    compiled graphs, autocast caches and allocator state cannot leak from one
    measurement into the next; a failure comes back as ``{"skipped": reason}``.
    ``ANN_BENCH_IN_PROCESS=1`` calls it here instead (tests, debuggers)."""
    if os.environ.get("ANN_BENCH_IN_PROCESS") == "1":
        return fn(spec)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), ANN_BENCH_WORKER="1")
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


def _lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.readlines()
    except OSError:
        return []


def proc_kib(path: str, field: str) -> int:
    """A KiB field of a /proc file (``VmRSS`` of /proc/self/status); 0 if absent."""
    return next((int(ln.split()[1]) for ln in _lines(path) if ln.startswith(field + ":")), 0)


def _release_freed_memory(pin_threshold: bool) -> None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: the peak then includes what the allocator kept
    if pin_threshold:
        libc.mallopt(-3, 65536)  # M_MMAP_THRESHOLD; fixing it also stops glibc raising it
    libc.malloc_trim(0)


class PeakMemory:
    """Peak memory of a window of work (module docstring): made once what is
    not to be counted exists, :meth:`reset` as the window starts."""

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


def sync(device: torch.device) -> None:
    """Waits for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    run: Callable[[], Any], runs: int, device: torch.device, memory: PeakMemory | None = None
) -> tuple[list[float], int | None, Any]:
    """Seconds of each of ``runs`` calls of ``run`` (a call's result is dropped
    before the next starts); with ``memory``, one more call for the peak alone,
    whose peak bytes and result come back too."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - start)
    if memory is None:
        return times, None, None
    memory.reset()
    out = run()
    sync(device)
    return times, memory.peak(), out


def timings(times: list[float], warmup: int, per_run: int, peak: int, compiled: bool) -> dict:
    """A worker's timing fields: median seconds of the runs after ``warmup``,
    images/s (``per_run`` images a run), peak bytes, the raw times and, for a
    compiled run, the warm-up time beyond that many median runs."""
    median = statistics.median(times[warmup:])
    compile_s = sum(times[:warmup]) - warmup * median if compiled else None
    return {
        "time_s": median,
        "images_per_s": per_run / median,
        "peak_bytes": peak,
        "warmup_s": times[:warmup],
        "times_s": times[warmup:],
        "compile_s": compile_s,
    }


def environment(device: str, threads: int) -> dict:
    """Device, versions, threads and load average."""
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in _lines("/proc/cpuinfo")
            if ln.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "device_name": cpu,
    }
    if device == "cuda":
        env.update(
            device_name=torch.cuda.get_device_name(),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return env


def describe(env: dict) -> str:
    """One line for a table's caption."""
    load = ", ".join(f"{v:.1f}" for v in env["loadavg"])
    return (
        f"{env['device_name']}, torch {env['torch']}, {env['threads']} threads, "
        f"load average {load} (of {env['cpu_count']} CPUs) at start"
    )


def parse_args(argv: list[str], prog: str, doc: str, options: list) -> argparse.Namespace:
    """``argv`` parsed with ``options``, ``(flag, add_argument kwargs)`` pairs;
    ``doc`` (the module docstring) is the ``--help`` description."""
    p = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for flag, kwargs in options:
        p.add_argument(flag, **kwargs)
    return p.parse_args(argv)


def parse_size(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> (512, 1024)."""
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def make_inputs(
    count: int, width: int = 2048, height: int = 1024, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` street-like samples: smooth (H, W, 3) uint8 images and (H, W)
    uint8 labels of horizontal class bands in [0, 19) with void (255) blobs."""
    import cv2

    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        image = np.clip(image.astype(np.int16) + rng.integers(-8, 8, image.shape), 0, 255)
        bands = np.sort(rng.choice(np.arange(1, height), 7, replace=False))
        label = np.searchsorted(bands, np.arange(height))[:, None].repeat(width, 1)
        label = (label * 2 + (np.arange(width)[None] // 300) % 2).astype(np.uint8) % 19
        for _ in range(5):
            y, x = rng.integers(0, height - 100), rng.integers(0, width - 200)
            label[y : y + 100, x : x + 200] = 255
        samples.append((image.astype(np.uint8), label))
    return samples


def write_tree(
    root: Path, count: int, width: int, height: int, classes: int = 19, ignore: int = 255
) -> Path:
    """:func:`make_inputs` as PNG pairs in the folder layout images/train,
    masks/train (labels modulo ``classes``, void as ``ignore``); returns ``root``."""
    from PIL import Image

    for sub in ("images/train", "masks/train"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(make_inputs(count, width, height)):
        Image.fromarray(image).save(root / "images/train" / f"{i:04d}.png")
        mask = np.where(label == 255, ignore, label % classes).astype(np.uint8)
        Image.fromarray(mask).save(root / "masks/train" / f"{i:04d}.png")
    return root


def ratio(value: float | None, base: float | None) -> str:
    """``value / base`` as "1.23x"; "-" when either is missing."""
    return "-" if value is None or not base else f"{value / base:.2f}x"


def print_table(caption: str, rows: list[list[str]]) -> None:
    """The caption, then left-aligned columns; ``rows[0]`` is the header."""
    print(caption)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
