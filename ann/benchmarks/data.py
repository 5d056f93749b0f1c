"""Training-pipeline throughput: ours (albumentations + OpenCV, fused
rescale-crop) against an equivalent torchvision.transforms.v2 pipeline.

    python tools/benchmark.py data [--samples N] [--threads T] [--size W H]
    python tools/benchmark.py data --loader [--workers W] [--samples N] [--loaders L]

Both run the full Cityscapes training augmentation of DESIGN §3 (random
keep-ratio rescale 0.5–2.0 of 2048×1024, 512×1024 crop with cat_max_ratio
0.75, flip, photometric distortion, normalise, pad) on the same in-memory
2048×1024 images and labels, one sample at a time in this process, with
``T`` threads (default 1, as in a DataLoader worker): images/s per worker.
File decoding is left out, being the same for both.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ann.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TrainTransform, rescale_size


class TorchvisionTrainTransform:
    """The same augmentation written with torchvision.transforms.v2 on uint8
    tensors, the way it is usually written: resize the whole image, then crop.

    (H, W, 3) uint8, (H, W) uint8 -> (3, *crop) float32, crop int64.
    """

    def __init__(
        self,
        crop_size: tuple[int, int] = (512, 1024),
        scale: tuple[int, int] = (2048, 1024),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        ignore_index: int = 255,
    ) -> None:
        self.crop_size, self.scale, self.ratio_range = crop_size, scale, ratio_range
        self.cat_max_ratio, self.ignore_index = cat_max_ratio, ignore_index
        # mmsegmentation's photometric steps, each with probability 0.5.
        self.photometric = v2.Compose(
            [
                v2.RandomApply([v2.ColorJitter(brightness=32 / 255)], p=0.5),
                v2.RandomApply([v2.ColorJitter(contrast=0.5)], p=0.5),
                v2.RandomApply([v2.ColorJitter(saturation=0.5)], p=0.5),
                v2.RandomApply([v2.ColorJitter(hue=18 / 180)], p=0.5),
            ]
        )
        self.normalize = v2.Compose(
            [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        )

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rng = random.Random(seed)
        if seed is not None:
            torch.manual_seed(seed)
        img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))
        msk = tv_tensors.Mask(torch.from_numpy(mask))
        size = rescale_size(*image.shape[:2], self.scale, rng.uniform(*self.ratio_range))
        img = F.resize(img, list(size), antialias=False)
        msk = F.resize(msk, list(size), interpolation=v2.InterpolationMode.NEAREST_EXACT)
        ch, cw = min(self.crop_size[0], size[0]), min(self.crop_size[1], size[1])

        def box() -> tuple[int, int]:
            return rng.randint(0, size[0] - ch), rng.randint(0, size[1] - cw)

        top, left = box()
        for _ in range(10):
            counts = torch.bincount(F.crop(msk, top, left, ch, cw).flatten(), minlength=256)
            counts[self.ignore_index] = 0
            if (counts > 0).sum() > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
            top, left = box()
        img, msk = F.crop(img, top, left, ch, cw), F.crop(msk, top, left, ch, cw)
        if rng.random() < 0.5:
            img, msk = F.horizontal_flip(img), F.horizontal_flip(msk)
        img = self.normalize(self.photometric(img))
        pad = [0, 0, self.crop_size[1] - cw, self.crop_size[0] - ch]
        img = F.pad(img, pad, fill=0)
        msk = F.pad(msk, pad, fill=self.ignore_index)
        return img.as_subclass(torch.Tensor), msk.as_subclass(torch.Tensor).long()


def make_inputs(
    count: int, width: int = 2048, height: int = 1024, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` street-like samples: smooth (H, W, 3) uint8 images and (H, W)
    uint8 labels of horizontal class bands with void (255) blobs."""
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


def throughput(
    pipeline: Callable, inputs: list[tuple[np.ndarray, np.ndarray]], samples: int
) -> float:
    """Images per second of ``pipeline`` over ``samples`` calls (after 2 warm-up calls)."""
    for i in range(2):
        pipeline(*inputs[i % len(inputs)], seed=i)
    start = time.perf_counter()
    for i in range(samples):
        pipeline(*inputs[i % len(inputs)], seed=1000 + i)
    return samples / (time.perf_counter() - start)


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="tools/benchmark.py data", description=__doc__)
    parser.add_argument("--samples", type=int, default=40, help="timed samples per pipeline")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    parser.add_argument("--size", type=int, nargs=2, default=(2048, 1024), metavar=("W", "H"))
    parser.add_argument(
        "--loader",
        action="store_true",
        help="compare DataLoader worker start methods instead (ann.benchmarks.loader)",
    )
    parser.add_argument("--workers", type=int, default=2, help="--loader: workers per loader")
    parser.add_argument("--loaders", type=int, default=4, help="--loader: fresh loaders timed")
    args = parser.parse_args(argv)
    if args.loader:
        from ann.benchmarks import loader

        return loader.run(args.workers, args.samples, args.loaders)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    inputs = make_inputs(4, *args.size)
    ours = TrainTransform(
        (512, 1024), scale=(2048, 1024), ratio_range=(0.5, 2.0), cat_max_ratio=0.75
    )
    theirs = TorchvisionTrainTransform((512, 1024), (2048, 1024), (0.5, 2.0), 0.75)
    rates = {
        "ours (albumentations/OpenCV)": throughput(ours, inputs, args.samples),
        "torchvision.transforms.v2": throughput(theirs, inputs, args.samples),
    }
    base = rates["torchvision.transforms.v2"]
    print(
        f"training pipeline, {args.size[0]}x{args.size[1]} inputs, crop 512x1024, "
        f"{args.threads} thread(s), {args.samples} samples each"
    )
    print(f"{'pipeline':<32} {'images/s':>9} {'ms/image':>9} {'vs torchvision':>15}")
    for name, rate in rates.items():
        print(f"{name:<32} {rate:>9.1f} {1000 / rate:>9.1f} {rate / base:>14.2f}x")
    return {
        "input_size": list(args.size),
        "crop_size": [512, 1024],
        "threads": args.threads,
        "samples": args.samples,
        "images_per_s": {"ours": rates["ours (albumentations/OpenCV)"], "torchvision_v2": base},
        "speedup": rates["ours (albumentations/OpenCV)"] / base,
    }
