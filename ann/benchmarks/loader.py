"""DataLoader worker start methods side by side: what starting workers from
a fork server (ann.data.loader) costs against plain fork and spawn.

    python tools/benchmark.py data --loader [--workers W] [--samples N] [--loaders L]

Each start method runs in a fresh Python process (so that plain fork, which
hangs once the parent has used OpenCV's threads, is measured in a parent
that has not) over the same Cityscapes-size PNG files, with the Cityscapes
training pipeline: the time from a new loader to its first batch, for the
first loader of the process (the fork server starts there) and for later
ones (a validation's loader), and the steady data throughput of W workers.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

METHODS = ("fork", "forkserver", "spawn")


def write_tree(root: Path, count: int, width: int = 2048, height: int = 1024) -> Path:
    """``count`` street-like PNG pairs in the folder layout images/train, masks/train."""
    from ann.benchmarks.data import make_inputs

    (root / "images/train").mkdir(parents=True, exist_ok=True)
    (root / "masks/train").mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(make_inputs(count, width, height)):
        Image.fromarray(image).save(root / "images/train" / f"{i:04d}.png")
        Image.fromarray(np.where(label == 255, 255, label % 19).astype(np.uint8)).save(
            root / "masks/train" / f"{i:04d}.png"
        )
    return root


def measure(method: str, root: str, workers: int, samples: int, loaders: int) -> dict:
    """Runs in the child process: first-batch latencies of ``loaders`` fresh
    loaders and images/s over ``samples`` samples (batch 2) with ``method``."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from ann.data.folder import FolderDataset
    from ann.data.loader import build_loader, init_worker
    from ann.data.transforms import TrainTransform

    torch.set_num_threads(1)
    transform = TrainTransform((512, 1024), (2048, 1024), (0.5, 2.0), cat_max_ratio=0.75)
    classes = [str(i) for i in range(19)]
    dataset = FolderDataset(root, "train", classes, transforms=transform)

    def loader(count: int = 2) -> DataLoader:
        sampler = RandomSampler(dataset, replacement=True, num_samples=count)
        if method == "forkserver":
            return build_loader(dataset, batch_size=2, sampler=sampler, num_workers=workers)
        ctx = multiprocessing.get_context(method)
        return DataLoader(
            dataset, batch_size=2, sampler=sampler, num_workers=workers,
            multiprocessing_context=ctx, worker_init_fn=init_worker,
        )  # fmt: skip

    first = []
    for _ in range(loaders):
        start = time.perf_counter()
        it = iter(loader())
        next(it)
        first.append(time.perf_counter() - start)
        del it
    # Steady state: one loader over samples + 2 (the first batch is start-up).
    it = iter(loader(samples + 2))
    next(it)
    start, seen = time.perf_counter(), 0
    for batch in it:
        seen += batch["image"].shape[0]
    rate = seen / (time.perf_counter() - start)
    return {"first_loader_s": first[0], "later_loader_s": float(np.median(first[1:])),
            "images_per_s": rate}  # fmt: skip


def run(workers: int, samples: int, loaders: int) -> dict:
    """Each start method in its own process; prints the table, returns the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = write_tree(Path(tmp) / "data", max(8, 2 * workers))
        results = {}
        for method in METHODS:
            proc = subprocess.run(
                [sys.executable, "-m", "ann.benchmarks.loader", method, str(root),
                 str(workers), str(samples), str(loaders)],
                capture_output=True, text=True, timeout=1800,
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"{method}: {proc.stderr.strip().splitlines()[-1]}")
            results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = results["fork"]
    print(
        f"DataLoader start methods: {workers} workers, Cityscapes training pipeline on "
        f"2048x1024 PNGs, batch 2, {samples} samples"
    )
    print(
        f"{'method':<12} {'1st loader s':>12} {'later loader s':>15} {'images/s':>9} {'vs fork':>8}"
    )
    for method, r in results.items():
        print(
            f"{method:<12} {r['first_loader_s']:>12.2f} {r['later_loader_s']:>15.2f} "
            f"{r['images_per_s']:>9.2f} {r['images_per_s'] / base['images_per_s']:>7.2f}x"
        )
    return {"workers": workers, "samples": samples, "loaders": loaders, "methods": results}


if __name__ == "__main__":
    method, root, workers, samples, loaders = sys.argv[1:6]
    print(json.dumps(measure(method, root, int(workers), int(samples), int(loaders))))
