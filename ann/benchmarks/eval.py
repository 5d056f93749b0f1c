"""python tools/benchmark.py eval [--cm-reps N] [--models r18 r50] [--r18-size H W]
[--r50-size H W] [--images N] [--threads T] [--device D]

1. Confusion-matrix updates (Mpixel/s) on one 1024x2048 prediction and label
   pair, 19 classes, ~10 % ignore: ours (``torch.bincount``, as the evaluator
   runs it) against torchmetrics' MulticlassJaccardIndex (with and without
   argument validation) and cityscapesscripts' numpy path (``np.unique`` over
   encoded pairs, its evaluatePair without Cython); the matrices must agree.
2. End-to-end images/s of ``Evaluator.predict`` for whole, slide and 6-scale +
   flip inference with random-weight ANN R-18 (128x256) and R-50 (64x128), the
   slide windows 769/1024 and strides 513/1024 of the height (2x4 windows).
"""

from __future__ import annotations

import functools
import statistics

import numpy as np
import torch
from hydra.utils import instantiate

from ann.benchmarks import harness
from ann.benchmarks.infer import window_geometry
from ann.evaluation.evaluator import Evaluator
from ann.evaluation.metrics import confusion_matrix

MS_SCALES = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def make_pair(height: int = 1024, width: int = 2048, k: int = 19, seed: int = 0) -> tuple:
    """A prediction (H, W) int64 in [0, K) and a label (H, W) int64 with ~10 %
    ignore (255) that agrees with it on ~70 % of the pixels."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, (height, width), generator=g)
    other = torch.randint(0, k, (height, width), generator=g)
    pred = torch.where(torch.rand(height, width, generator=g) < 0.7, target, other)
    target[torch.rand(height, width, generator=g) < 0.1] = 255
    return pred, target


def bench_confusion(reps: int, device: torch.device, k: int = 19) -> dict:
    """Each implementation's median update time over ``reps`` (after one) on
    :func:`make_pair`, and whether their matrices agree."""
    from torchmetrics.classification import MulticlassJaccardIndex

    pred, target = make_pair(k=k)
    pred_d, target_d = pred.to(device), target.to(device)
    conf = torch.zeros(k, k, dtype=torch.int64, device=device)
    tm = MulticlassJaccardIndex(k, average="none", ignore_index=255).to(device)
    tm_fast = MulticlassJaccardIndex(k, average="none", ignore_index=255, validate_args=False)
    tm_fast = tm_fast.to(device)
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

    fns = {
        "ours (ann.evaluation.metrics.confusion_matrix)": lambda: conf.add_(
            confusion_matrix(pred_d, target_d, k, 255)
        ),
        "torchmetrics MulticlassJaccardIndex": lambda: tm.update(pred_d, target_d),
        "torchmetrics, validate_args=False": lambda: tm_fast.update(pred_d, target_d),
    }
    if device.type == "cpu":  # numpy only
        fns["cityscapesscripts numpy path"] = cityscapes
    times = {
        name: statistics.median(harness.measure(fn, reps + 1, device)[0][1:])
        for name, fn in fns.items()
    }
    # Each implementation saw the same pair reps + 1 times.
    one = confusion_matrix(pred_d, target_d, k, 255).cpu() * (reps + 1)
    agree = torch.equal(tm_fast.confmat.cpu().long(), one)
    if device.type == "cpu":
        agree &= torch.equal(torch.from_numpy(cs_conf[:k, :k].astype(np.int64)), one)
    results = {
        name: {"ms_per_update": 1e3 * t, "mpixel_per_s": pred.numel() / t / 1e6}
        for name, t in times.items()
    }
    return {"pixels": pred.numel(), "device": str(device), "agree": bool(agree), "results": results}


def bench_end_to_end(
    models: list[str], sizes: dict[str, tuple[int, int]], images: int, device: torch.device
) -> list[dict]:
    """Seconds and images/s of ``Evaluator.predict`` per model and mode."""
    rows = []
    for name in models:
        overrides = [f"model=ann_{name}", "dataset=cityscapes", "model.backbone.pretrained=null"]
        model = instantiate(harness.compose("eval", overrides).model).eval().to(device)
        height, width = sizes[name]
        image = torch.randn(1, 3, height, width, device=device)
        crop, stride = window_geometry(height)
        evaluators = {
            "whole": Evaluator(),
            "slide": Evaluator(mode="slide", crop_size=crop, stride=stride),
            "6-scale+flip": Evaluator(scales=MS_SCALES, flip=True),
        }
        for mode, ev in evaluators.items():
            run = functools.partial(ev.predict, model, image, (height, width))
            # "whole" runs first, after one untimed image that warms the model up.
            warm = int(mode == "whole")
            t = statistics.median(harness.measure(run, warm + images, device)[0][warm:])
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
    """Runs both parts, prints their tables, returns the figures."""
    args = harness.parse_args(
        argv,
        "benchmark.py eval",
        __doc__,
        [
            ("--cm-reps", dict(type=int, default=10, help="timed confusion-matrix updates")),
            ("--models", dict(nargs="*", default=["r18", "r50"], choices=["r18", "r50"])),
            ("--r18-size", dict(type=int, nargs=2, default=(128, 256), metavar=("H", "W"))),
            ("--r50-size", dict(type=int, nargs=2, default=(64, 128), metavar=("H", "W"))),
            ("--images", dict(type=int, default=1, help="timed images per mode")),
            ("--threads", dict(type=int, default=None, help="torch threads (default all)")),
            ("--device", dict(default="cpu")),
        ],
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    device, threads = torch.device(args.device), torch.get_num_threads()

    cm = bench_confusion(args.cm_reps, device)
    base = cm["results"]["torchmetrics MulticlassJaccardIndex"]["mpixel_per_s"]
    rows = [
        [
            name,
            f"{r['mpixel_per_s']:.1f}",
            f"{r['ms_per_update']:.2f}",
            harness.ratio(r["mpixel_per_s"], base),
        ]
        for name, r in cm["results"].items()
    ]
    harness.print_table(
        f"confusion-matrix update, 1024x2048, 19 classes, 10% ignore, {device}, "
        f"{threads} thread(s), median of {args.cm_reps}; matrices agree: {cm['agree']}",
        [["implementation", "Mpixel/s", "ms/update", "vs torchmetrics"], *rows],
    )
    sizes = {"r18": tuple(args.r18_size), "r50": tuple(args.r50_size)}
    e2e, whole = bench_end_to_end(args.models, sizes, args.images, device), {}
    for row in e2e:
        whole.setdefault(row["model"], row["s_per_image"])  # "whole" comes first
        row["vs_whole"] = whole[row["model"]] / row["s_per_image"]
    rows = [
        [
            r["model"],
            r["input"],
            r["mode"],
            f"{r['images_per_s']:.2f}",
            f"{r['s_per_image']:.2f}",
            f"{r['vs_whole']:.2f}x",
        ]
        for r in e2e
    ]
    harness.print_table(
        f"\nend to end (Evaluator.predict), {device}, {threads} thread(s), median of "
        f"{args.images} image(s), random weights, 19 classes",
        [["model", "input", "mode", "images/s", "s/image", "vs whole"], *rows],
    )
    return {
        "confusion_matrix": cm,
        "end_to_end": e2e,
        "threads": threads,
        "device": str(device),
        "argv": argv,
    }
