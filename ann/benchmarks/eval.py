"""Evaluation speed: confusion-matrix updates and end-to-end images/s.

    python tools/benchmark.py eval [--cm-reps N] [--models r18 r50] [--r18-size H W]
                                   [--r50-size H W] [--images N] [--threads T] [--device D]

1. Confusion-matrix update throughput (Mpixel/s) on one 1024×2048 prediction
   and label pair, 19 classes, ~10 % ignore pixels: ours (``torch.bincount``,
   as the evaluator runs it) against torchmetrics' ``MulticlassJaccardIndex``
   (with and without its argument validation) and cityscapesscripts' numpy
   path (``np.unique`` over encoded pairs, what its ``evaluatePair`` runs when
   its Cython extension is not built). All start from the same tensors; the
   matrices are checked to agree.
2. End-to-end images/s of ``Evaluator.predict`` (forward passes, resizing,
   softmax averaging) for whole, slide and 6-scale + flip inference with the
   small (ANN R-18, 128×256) and the R-50 model (64×128), randomly initialised, on small inputs
   (the reference geometry scaled down: slide crop and stride are 769/1024 and
   513/1024 of the input height, giving 2×4 windows on a 1:2 image).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from ann.evaluation.evaluator import Evaluator
from ann.evaluation.metrics import confusion_matrix

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
MS_SCALES = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def make_pair(
    height: int = 1024, width: int = 2048, k: int = 19, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A prediction (H, W) int64 in [0, K) and a label (H, W) int64 with ~10 %
    ignore (255) that agrees with it on ~70 % of the pixels."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, (height, width), generator=g)
    pred = torch.where(
        torch.rand(height, width, generator=g) < 0.7,
        target,
        torch.randint(0, k, (height, width), generator=g),
    )
    target[torch.rand(height, width, generator=g) < 0.1] = 255
    return pred, target


def time_per_call(
    fn: Callable[[], object], reps: int, sync: Callable[[], None], warmup: bool = True
) -> float:
    """Seconds per call of ``fn``: the median of ``reps`` calls (after one
    warm-up call unless ``warmup`` is false)."""
    if warmup:
        fn()
        sync()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_confusion(reps: int, device: torch.device, k: int = 19) -> dict:
    from torchmetrics.classification import MulticlassJaccardIndex

    pred, target = make_pair(k=k)
    pixels = pred.numel()
    pred_d, target_d = pred.to(device), target.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    conf = torch.zeros(k, k, dtype=torch.int64, device=device)

    def ours() -> None:
        conf.add_(confusion_matrix(pred_d, target_d, k, 255))

    tm = MulticlassJaccardIndex(k, average="none", ignore_index=255).to(device)
    tm_fast = MulticlassJaccardIndex(k, average="none", ignore_index=255, validate_args=False).to(
        device
    )
    pred_np, target_np = pred.numpy().astype(np.uint8), target.numpy().astype(np.uint8)
    cs_conf = np.zeros((256, 256), dtype=np.ulonglong)

    def cityscapes() -> None:
        # cityscapesscripts evalPixelLevelSemanticLabeling.evaluatePair, non-Cython path
        encoding = max(target_np.max(), pred_np.max()).astype(np.int32) + 1
        encoded = target_np.astype(np.int32) * encoding + pred_np
        values, counts = np.unique(encoded, return_counts=True)
        for value, c in zip(values, counts, strict=True):
            p = value % encoding
            cs_conf[(value - p) // encoding][p] += c

    rows = {
        "ours (ann.evaluation.metrics.confusion_matrix)": time_per_call(ours, reps, sync),
        "torchmetrics MulticlassJaccardIndex": time_per_call(
            lambda: tm.update(pred_d, target_d), reps, sync
        ),
        "torchmetrics, validate_args=False": time_per_call(
            lambda: tm_fast.update(pred_d, target_d), reps, sync
        ),
    }
    if device.type == "cpu":  # numpy only
        rows["cityscapesscripts numpy path"] = time_per_call(cityscapes, reps, sync)
    # Each implementation saw the same pair reps + 1 times.
    one = confusion_matrix(pred_d, target_d, k, 255).cpu() * (reps + 1)
    agree = torch.equal(tm_fast.confmat.cpu().long(), one)
    if "cityscapesscripts numpy path" in rows:
        agree &= torch.equal(torch.from_numpy(cs_conf[:k, :k].astype(np.int64)), one)
    return {
        "pixels": pixels,
        "device": str(device),
        "agree": bool(agree),
        "results": {
            name: {"ms_per_update": 1e3 * t, "mpixel_per_s": pixels / t / 1e6}
            for name, t in rows.items()
        },
    }


def build_model(name: str) -> torch.nn.Module:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "eval",
            overrides=[f"model=ann_{name}", "dataset=cityscapes", "model.backbone.pretrained=null"],
        )
    return instantiate(cfg.model).eval()


def evaluators(height: int) -> dict[str, Evaluator]:
    crop = max(round(height * 769 / 1024), 1)
    stride = max(round(height * 513 / 1024), 1)
    return {
        "whole": Evaluator(),
        "slide": Evaluator(mode="slide", crop_size=[crop, crop], stride=[stride, stride]),
        "6-scale+flip": Evaluator(scales=MS_SCALES, flip=True),
    }


def bench_end_to_end(
    models: list[str], sizes: dict[str, tuple[int, int]], images: int, device: torch.device
) -> list[dict]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for name in models:
        model = build_model(name).to(device)
        height, width = sizes[name]
        image = torch.randn(1, 3, height, width, device=device)
        for mode, ev in evaluators(height).items():
            run = functools.partial(ev.predict, model, image, (height, width))
            # "whole" runs first and warms the model up for the other modes.
            t = time_per_call(run, images, sync, warmup=mode == "whole")
            rows.append(
                {
                    "model": f"ANN {name.upper()}",
                    "input": f"{height}x{width}",
                    "mode": mode,
                    "images_per_s": 1 / t,
                    "s_per_image": t,
                }
            )
    return rows


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="tools/benchmark.py eval", description=__doc__)
    parser.add_argument("--cm-reps", type=int, default=10, help="timed confusion-matrix updates")
    parser.add_argument("--models", nargs="*", default=["r18", "r50"], choices=["r18", "r50"])
    parser.add_argument("--r18-size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    parser.add_argument("--r50-size", type=int, nargs=2, default=(64, 128), metavar=("H", "W"))
    parser.add_argument("--images", type=int, default=1, help="timed images per mode")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    threads = torch.get_num_threads()

    cm = bench_confusion(args.cm_reps, device)
    base = cm["results"]["torchmetrics MulticlassJaccardIndex"]["mpixel_per_s"]
    print(
        f"confusion-matrix update, 1024x2048, 19 classes, 10% ignore, {device}, "
        f"{threads} thread(s), median of {args.cm_reps}; matrices agree: {cm['agree']}"
    )
    print(f"{'implementation':<38} {'Mpixel/s':>9} {'ms/update':>10} {'vs torchmetrics':>16}")
    for name, row in cm["results"].items():
        print(
            f"{name:<38} {row['mpixel_per_s']:9.1f} {row['ms_per_update']:10.2f} "
            f"{row['mpixel_per_s'] / base:15.2f}x"
        )

    sizes = {"r18": tuple(args.r18_size), "r50": tuple(args.r50_size)}
    e2e = bench_end_to_end(args.models, sizes, args.images, device)
    print(
        f"\nend to end (Evaluator.predict), {device}, {threads} thread(s), median of "
        f"{args.images} image(s), random weights, 19 classes"
    )
    print(f"{'model':<10} {'input':>9} {'mode':<14} {'images/s':>9} {'s/image':>8} {'vs whole':>9}")
    whole = {}
    for row in e2e:
        if row["mode"] == "whole":
            whole[row["model"]] = row["s_per_image"]
        row["vs_whole"] = whole[row["model"]] / row["s_per_image"]
        print(
            f"{row['model']:<10} {row['input']:>9} {row['mode']:<14} {row['images_per_s']:9.2f} "
            f"{row['s_per_image']:8.2f} {row['vs_whole']:8.2f}x"
        )
    return {
        "confusion_matrix": cm,
        "end_to_end": e2e,
        "threads": threads,
        "device": str(device),
        "argv": argv,
    }
