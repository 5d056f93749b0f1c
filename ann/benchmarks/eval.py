"""Confusion-matrix updates (ours, torchmetrics, cityscapesscripts' numpy path)
and end-to-end ``Evaluator.predict`` images/s for whole, slide and 6-scale +
flip inference with random-weight ANN R-18 / R-50 (docs/evaluation.md)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from ann.benchmarks import harness
from ann.benchmarks.infer import window_geometry
from ann.evaluation.evaluator import Evaluator
from ann.evaluation.metrics import confusion_matrix

MS_SCALES = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
OPTIONS = {
    "--cm-reps": dict(type=int, default=10, help="timed confusion-matrix updates"),
    "--models": dict(nargs="*", default=["r18", "r50"], choices=["r18", "r50"]),
    "--r18-size": dict(type=int, nargs=2, default=(128, 256), metavar=("H", "W")),
    "--r50-size": dict(type=int, nargs=2, default=(64, 128), metavar=("H", "W")),
    "--images": dict(type=int, default=1, help="timed images per mode"),
    "--threads": dict(type=int, default=None, help="torch threads (default all)"),
    "--device": dict(default="cpu"),
}


def make_pair(height: int = 1024, width: int = 2048, k: int = 19, seed: int = 0) -> tuple:
    """A prediction and a label (H, W) int64 that agree on ~70 %, ~10 % ignore (255)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, k, (height, width), generator=g)
    other = torch.randint(0, k, (height, width), generator=g)
    pred = torch.where(torch.rand(height, width, generator=g) < 0.7, target, other)
    target[torch.rand(height, width, generator=g) < 0.1] = 255
    return pred, target


def bench_confusion(reps: int, device: torch.device, k: int = 19) -> dict:
    """Each implementation's median update time over ``reps``; do the matrices agree?"""
    from torchmetrics.classification import MulticlassJaccardIndex

    pred, target = make_pair(k=k)
    pred_d, target_d = pred.to(device), target.to(device)
    conf = torch.zeros(k, k, dtype=torch.int64, device=device)
    tm, tm_fast = (
        MulticlassJaccardIndex(k, average="none", ignore_index=255, validate_args=v).to(device)
        for v in (True, False)
    )
    pred_np, target_np = pred.numpy().astype(np.uint8), target.numpy().astype(np.uint8)
    cs_conf = np.zeros((256, 256), dtype=np.ulonglong)

    def ours() -> None:
        conf.add_(confusion_matrix(pred_d, target_d, k, 255))

    def cityscapes() -> None:
        # cityscapesscripts evalPixelLevelSemanticLabeling.evaluatePair, non-Cython path
        encoding = max(target_np.max(), pred_np.max()).astype(np.int32) + 1
        encoded = target_np.astype(np.int32) * encoding + pred_np
        values, counts = np.unique(encoded, return_counts=True)
        for value, c in zip(values, counts, strict=True):
            p = value % encoding
            cs_conf[(value - p) // encoding][p] += c

    fns = {
        "ours (ann.evaluation.metrics.confusion_matrix)": ours,
        "torchmetrics MulticlassJaccardIndex": functools.partial(tm.update, pred_d, target_d),
        "torchmetrics, validate_args=False": functools.partial(tm_fast.update, pred_d, target_d),
    }
    if device.type == "cpu":  # numpy only
        fns["cityscapesscripts numpy path"] = cityscapes
    results = {}
    for name, fn in fns.items():
        t = harness.median_after(fn, 1, reps, device)
        results[name] = {"ms_per_update": 1e3 * t, "mpixel_per_s": pred.numel() / t / 1e6}
    # Each implementation saw the same pair reps + 1 times.
    one = confusion_matrix(pred_d, target_d, k, 255).cpu() * (reps + 1)
    agree = torch.equal(tm_fast.confmat.cpu().long(), one)
    if device.type == "cpu":
        agree &= torch.equal(torch.from_numpy(cs_conf[:k, :k].astype(np.int64)), one)
    return {"pixels": pred.numel(), "device": str(device), "agree": bool(agree), "results": results}


def bench_end_to_end(
    models: list[str], sizes: dict[str, tuple[int, int]], images: int, device: torch.device
) -> list[dict]:
    """Seconds, images/s and speed vs "whole" of ``Evaluator.predict`` per model and mode."""
    rows = []
    for name in models:
        model = harness.build_model(harness.model_config(f"ann_{name}")).eval().to(device)
        (height, width), whole = sizes[name], None
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
            t = harness.median_after(run, int(mode == "whole"), images, device)
            whole = whole or t
            model_name, size = f"ANN {name.upper()}", f"{height}x{width}"
            row = {"model": model_name, "input": size, "mode": mode, "images_per_s": 1 / t}
            rows.append({**row, "s_per_image": t, "vs_whole": whole / t})
    return rows


def main(argv: list[str]) -> dict:
    """Runs both parts, prints their tables, returns the figures."""
    args = harness.parse_args(argv, __name__, __doc__, OPTIONS)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, threads = torch.device(args.device), torch.get_num_threads()
    cm = bench_confusion(args.cm_reps, device)
    base = cm["results"]["torchmetrics MulticlassJaccardIndex"]["mpixel_per_s"]
    rows = [["implementation", "Mpixel/s", "ms/update", "vs torchmetrics"]]
    for name, r in cm["results"].items():
        mpix, ms = r["mpixel_per_s"], r["ms_per_update"]
        rows.append([name, f"{mpix:.1f}", f"{ms:.2f}", harness.ratio(mpix, base)])
    harness.print_table(
        f"confusion-matrix update, 1024x2048, 19 classes, 10% ignore, {device}, "
        f"{threads} thread(s), median of {args.cm_reps}; matrices agree: {cm['agree']}",
        rows,
    )
    sizes = {"r18": tuple(args.r18_size), "r50": tuple(args.r50_size)}
    e2e = bench_end_to_end(args.models, sizes, args.images, device)
    rows = [["model", "input", "mode", "images/s", "s/image", "vs whole"]]
    for r in e2e:
        speeds = (f"{r['images_per_s']:.2f}", f"{r['s_per_image']:.2f}", f"{r['vs_whole']:.2f}x")
        rows.append([r["model"], r["input"], r["mode"], *speeds])
    harness.print_table(
        f"\nend to end (Evaluator.predict), {device}, {threads} thread(s), median of "
        f"{args.images} image(s), random weights, 19 classes",
        rows,
    )
    return {
        "confusion_matrix": cm,
        "end_to_end": e2e,
        "threads": threads,
        "device": str(device),
        "argv": argv,
    }
