"""Batched ``Segmenter.predict``: a list of same-size images through the
model ``--batch-sizes`` at a time against one image at a time (random
weights, the experiment's evaluation pipeline), in this process; the masks
must be equal (docs/inference.md)."""

from __future__ import annotations

import time

import numpy as np
import torch

from ann.api import Segmenter
from ann.benchmarks import harness

OPTIONS = {
    "--experiment": dict(
        default="demo", help="configs/experiment name (its model and eval pipeline)"
    ),
    "--images": dict(type=int, default=8, help="same-size images per call"),
    "--size": dict(type=harness.parse_size, default=[256, 256], help="HxW of each image"),
    "--batch-sizes": dict(default="2,4,8", help="comma list of batch sizes to time"),
    "--repeats": dict(type=int, default=3, help="timed calls per variant (median)"),
    "--threads": dict(type=int, default=torch.get_num_threads(), help="torch threads"),
    "--device": dict(default="cpu"),
}


def main(argv: list[str]) -> dict:
    """Times each variant, prints the table, returns the figures."""
    args = harness.parse_args(argv, __name__, __doc__, OPTIONS)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    seg = Segmenter.from_config(args.experiment, device=args.device)
    h, w = args.size
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(args.images)]
    variants = {"one at a time": lambda: [seg.predict(im) for im in images]}
    for b in (int(v) for v in args.batch_sizes.split(",")):
        variants[f"batch {b}"] = lambda b=b: seg.predict(images, batch_size=b)
    reference = variants["one at a time"]()
    results: dict = {}
    for name, run in variants.items():
        harness.log(name)
        equal = all(
            np.array_equal(a, b) for a, b in zip(run(), reference, strict=True)
        )  # warm-up too
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        median = float(np.median(times))
        results[name] = {"time_s": median, "images_per_s": args.images / median, "equal": equal}
    base = results["one at a time"]["images_per_s"]
    rows = [["variant", "ms/image", "images/s", "speedup", "masks equal"]]
    for name, r in results.items():
        ms = 1000 / r["images_per_s"]
        row = [
            name,
            f"{ms:.1f}",
            f"{r['images_per_s']:.2f}",
            harness.ratio(r["images_per_s"], base),
        ]
        rows.append([*row, "yes" if r["equal"] else "NO"])
    harness.print_table(
        f"Segmenter.predict, experiment={args.experiment}, {args.images} images of {h}x{w}, "
        f"{args.device}, {args.threads} thread(s), median of {args.repeats}",
        rows,
    )
    return {
        "config": vars(args),
        "env": harness.environment(args.device, args.threads),
        "results": results,
    }
