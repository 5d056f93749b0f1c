"""python tools/benchmark.py data [--samples N] [--threads T] [--size W H]
python tools/benchmark.py data --loader [--workers W] [--samples N] [--loaders L]

Training-pipeline throughput: ours (albumentations + OpenCV, fused
rescale-crop) against the same Cityscapes augmentation in torchvision v2, on
the same in-memory street-like images, one sample at a time with T threads
(default 1, as in a DataLoader worker). ``--loader``: DataLoader worker start
methods (fork server, fork, spawn), each in its own process over the same
PNGs: seconds from a new loader to its first batch, and W workers' images/s.
"""

from __future__ import annotations

import multiprocessing
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ann.benchmarks import harness
from ann.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TrainTransform, rescale_size

METHODS = ("fork", "forkserver", "spawn")
CROP, SCALE, RATIOS, CAT_MAX = (512, 1024), (2048, 1024), (0.5, 2.0), 0.75


class TorchvisionTrainTransform:
    """The Cityscapes augmentation in torchvision.transforms.v2 on uint8 tensors,
    as it is usually written (resize the whole image, then crop): (H, W, 3)
    uint8, (H, W) uint8 -> (3, 512, 1024) float32, (512, 1024) int64."""

    def __init__(self, ignore_index: int = 255) -> None:
        from torchvision.transforms import v2

        self.ignore_index = ignore_index
        jitter = [{"brightness": 32 / 255}, {"contrast": 0.5}, {"saturation": 0.5}, {"hue": 0.1}]
        # mmsegmentation's photometric steps, each with probability 0.5.
        self.photometric = v2.Compose([v2.RandomApply([v2.ColorJitter(**j)]) for j in jitter])
        self.normalize = v2.Compose(
            [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        )

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int | None = None) -> tuple:
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        rng = random.Random(seed)
        if seed is not None:
            torch.manual_seed(seed)
        img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))
        msk = tv_tensors.Mask(torch.from_numpy(mask))
        size = rescale_size(*image.shape[:2], SCALE, rng.uniform(*RATIOS))
        img = F.resize(img, list(size), antialias=False)
        msk = F.resize(msk, list(size), interpolation=InterpolationMode.NEAREST_EXACT)
        ch, cw = min(CROP[0], size[0]), min(CROP[1], size[1])
        for _ in range(11):  # the first box, then up to 10 redraws (cat_max_ratio)
            top, left = rng.randint(0, size[0] - ch), rng.randint(0, size[1] - cw)
            counts = torch.bincount(F.crop(msk, top, left, ch, cw).flatten(), minlength=256)
            counts[self.ignore_index] = 0
            if (counts > 0).sum() > 1 and counts.max() / counts.sum() < CAT_MAX:
                break
        img, msk = F.crop(img, top, left, ch, cw), F.crop(msk, top, left, ch, cw)
        if rng.random() < 0.5:
            img, msk = F.horizontal_flip(img), F.horizontal_flip(msk)
        pad = [0, 0, CROP[1] - cw, CROP[0] - ch]
        img = F.pad(self.normalize(self.photometric(img)), pad, fill=0)
        msk = F.pad(msk, pad, fill=self.ignore_index)
        return img.as_subclass(torch.Tensor), msk.as_subclass(torch.Tensor).long()


def throughput(pipeline: Callable, inputs: list[tuple], samples: int) -> float:
    """Images per second of ``pipeline`` over ``samples`` calls (after 2 warm-up calls)."""
    for i in range(2):
        pipeline(*inputs[i % len(inputs)], seed=i)
    start = time.perf_counter()
    for i in range(samples):
        pipeline(*inputs[i % len(inputs)], seed=1000 + i)
    return samples / (time.perf_counter() - start)


def loader_worker(spec: dict) -> dict:
    """First-batch seconds of ``loaders`` fresh loaders and images/s over
    ``samples`` samples (batch 2) with start method ``method`` and ``workers``
    workers, over the PNG tree at ``root``, the Cityscapes training pipeline."""
    from torch.utils.data import DataLoader, RandomSampler

    from ann.data.folder import FolderDataset
    from ann.data.loader import build_loader, init_worker

    torch.set_num_threads(1)  # as in a DataLoader worker
    transform = TrainTransform(CROP, SCALE, RATIOS, cat_max_ratio=CAT_MAX)
    dataset = FolderDataset(
        spec["root"], "train", [str(i) for i in range(19)], transforms=transform
    )

    def loader(count: int = 2) -> DataLoader:
        sampler = RandomSampler(dataset, replacement=True, num_samples=count)
        kwargs = {"batch_size": 2, "sampler": sampler, "num_workers": spec["workers"]}
        if spec["method"] == "forkserver":
            return build_loader(dataset, **kwargs)
        ctx = multiprocessing.get_context(spec["method"])
        return DataLoader(
            dataset, multiprocessing_context=ctx, worker_init_fn=init_worker, **kwargs
        )

    first = []
    for _ in range(spec["loaders"]):
        start = time.perf_counter()
        next(iter(loader()))
        first.append(time.perf_counter() - start)
    # Steady state: one loader over samples + 2 (the first batch is start-up).
    it = iter(loader(spec["samples"] + 2))
    next(it)
    start, seen = time.perf_counter(), 0
    for batch in it:
        seen += batch["image"].shape[0]
    rate = seen / (time.perf_counter() - start)
    return {
        "first_loader_s": first[0],
        "later_loader_s": float(np.median(first[1:])),
        "images_per_s": rate,
    }


def loaders(workers: int, samples: int, count: int) -> dict:
    """Each start method in its own process; prints the table, returns the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = harness.write_tree(Path(tmp), max(8, 2 * workers), 2048, 1024)
        job = {"root": str(root), "workers": workers, "samples": samples, "loaders": count}
        results = {
            m: harness.run_worker(loader_worker, {**job, "method": m}, 1, 1800) for m in METHODS
        }
    base, keys = results["fork"].get("images_per_s"), ("first_loader_s", "later_loader_s")
    rows = [
        [
            m,
            *(f"{r[k]:.2f}" for k in (*keys, "images_per_s")),
            harness.ratio(r["images_per_s"], base),
        ]
        if "skipped" not in r
        else [m, "-", "-", "-", r["skipped"]]
        for m, r in results.items()
    ]
    harness.print_table(
        f"DataLoader start methods: {workers} workers, Cityscapes training pipeline on "
        f"2048x1024 PNGs, batch 2, {samples} samples",
        [["method", "1st loader s", "later loader s", "images/s", "vs fork"], *rows],
    )
    return {"workers": workers, "samples": samples, "loaders": count, "methods": results}


def main(argv: list[str]) -> dict:
    """Runs the pipelines (or, with ``--loader``, the start methods); prints the table."""
    args = harness.parse_args(
        argv,
        "benchmark.py data",
        __doc__,
        [
            ("--samples", dict(type=int, default=40, help="timed samples per pipeline")),
            ("--threads", dict(type=int, default=1, help="torch and OpenCV threads")),
            ("--size", dict(type=int, nargs=2, default=(2048, 1024), metavar=("W", "H"))),
            (
                "--loader",
                dict(action="store_true", help="compare DataLoader start methods instead"),
            ),
            ("--workers", dict(type=int, default=2, help="--loader: workers per loader")),
            ("--loaders", dict(type=int, default=4, help="--loader: fresh loaders timed")),
        ],
    )
    if args.loader:
        return loaders(args.workers, args.samples, args.loaders)
    import cv2

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    inputs = harness.make_inputs(4, *args.size)
    ours = TrainTransform(CROP, SCALE, RATIOS, cat_max_ratio=CAT_MAX)
    rate, base = (throughput(t, inputs, args.samples) for t in (ours, TorchvisionTrainTransform()))
    rows = [
        [name, f"{r:.1f}", f"{1000 / r:.1f}", harness.ratio(r, base)]
        for name, r in (("ours (albumentations/OpenCV)", rate), ("torchvision.transforms.v2", base))
    ]
    harness.print_table(
        f"training pipeline, {args.size[0]}x{args.size[1]} inputs, crop 512x1024, "
        f"{args.threads} thread(s), {args.samples} samples each",
        [["pipeline", "images/s", "ms/image", "vs torchvision"], *rows],
    )
    return {
        "input_size": list(args.size),
        "crop_size": list(CROP),
        "threads": args.threads,
        "samples": args.samples,
        "images_per_s": {"ours": rate, "torchvision_v2": base},
        "speedup": rate / base,
    }
