"""Training-pipeline throughput: ours (albumentations + OpenCV, fused rescale-crop)
against the same Cityscapes augmentation in torchvision v2 on the same in-memory
street-like images, one sample at a time (docs/datasets.md)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np
import torch

from ann.benchmarks import harness
from ann.data.synthetic import street_scenes
from ann.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TrainTransform, rescale_size

CROP, SCALE, RATIOS, CAT_MAX, IGNORE = (512, 1024), (2048, 1024), (0.5, 2.0), 0.75, 255
OPTIONS = {
    "--samples": dict(type=int, default=40, help="timed samples per pipeline"),
    "--threads": dict(type=int, default=1, help="torch and OpenCV threads"),
    "--size": dict(type=int, nargs=2, default=(2048, 1024), metavar=("W", "H")),
}


class TorchvisionTrainTransform:
    """The Cityscapes augmentation in torchvision.transforms.v2 on uint8 tensors,
    as it is usually written (resize the whole image, then crop): (H, W, 3)
    uint8, (H, W) uint8 -> (3, 512, 1024) float32, (512, 1024) int64."""

    def __init__(self) -> None:
        from torchvision.transforms import v2

        jitter = [{"brightness": 32 / 255}, {"contrast": 0.5}, {"saturation": 0.5}, {"hue": 0.1}]
        # Flip, mmsegmentation's photometric steps (each with probability 0.5), normalisation:
        # the image and mask are flipped together, the rest applies to the image alone.
        self.tail = v2.Compose(
            [v2.RandomHorizontalFlip(), *(v2.RandomApply([v2.ColorJitter(**j)]) for j in jitter)]
            + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        )

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int) -> tuple:
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        rng = random.Random(seed)
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
            counts[IGNORE] = 0
            if (counts > 0).sum() > 1 and counts.max() / counts.sum() < CAT_MAX:
                break
        img, msk = self.tail(F.crop(img, top, left, ch, cw), F.crop(msk, top, left, ch, cw))
        pad = [0, 0, CROP[1] - cw, CROP[0] - ch]
        img, msk = F.pad(img, pad, fill=0), F.pad(msk, pad, fill=IGNORE)
        return img.as_subclass(torch.Tensor), msk.as_subclass(torch.Tensor).long()


def throughput(pipeline: Callable, inputs: list[tuple], samples: int) -> float:
    """Images per second of ``pipeline`` over ``samples`` calls (after 2 warm-up calls)."""
    for i in range(2):
        pipeline(*inputs[i % len(inputs)], seed=i)
    start = time.perf_counter()
    for i in range(samples):
        pipeline(*inputs[i % len(inputs)], seed=1000 + i)
    return samples / (time.perf_counter() - start)


def main(argv: list[str]) -> dict:
    """Runs both pipelines, prints the table, returns the figures."""
    import cv2

    args = harness.parse_args(argv, __name__, __doc__, OPTIONS)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    inputs = street_scenes(4, *args.size)
    ours = TrainTransform(CROP, SCALE, RATIOS, cat_max_ratio=CAT_MAX)
    rate, base = (throughput(t, inputs, args.samples) for t in (ours, TorchvisionTrainTransform()))
    rows = [["pipeline", "images/s", "ms/image", "vs torchvision"]]
    for name, r in (("ours (albumentations/OpenCV)", rate), ("torchvision.transforms.v2", base)):
        rows.append([name, f"{r:.1f}", f"{1000 / r:.1f}", harness.ratio(r, base)])
    harness.print_table(
        f"training pipeline, {args.size[0]}x{args.size[1]} inputs, crop 512x1024, "
        f"{args.threads} thread(s), {args.samples} samples each",
        rows,
    )
    return {
        "input_size": list(args.size),
        "crop_size": list(CROP),
        "threads": args.threads,
        "samples": args.samples,
        "images_per_s": {"ours": rate, "torchvision_v2": base},
        "speedup": rate / base,
    }
