"""Batched prediction, the core of ``Segmenter.predict`` on a list
(:meth:`Evaluator.predict_masks <ann.evaluation.evaluator.Evaluator.predict_masks>`):
same-size images through the model ``--batch-sizes`` at a time against one
image at a time (random weights, the experiment's evaluation transform and
evaluator), in this process; the masks must be equal (docs/inference.md)."""

from __future__ import annotations

import time

import numpy as np
import torch
from hydra.utils import instantiate

from ann.benchmarks import harness
from ann.config.compose import compose

OPTIONS = {
    "--experiment": dict(default="demo", help="configs/experiment name (model, eval pipeline)"),
    "--images": dict(type=int, default=8, help="same-size images per call"),
    "--size": dict(type=harness.parse_size, default=[256, 256], help="HxW of each image"),
    "--batch-sizes": dict(default="2,4,8", help="comma list of batch sizes to time"),
    "--repeats": dict(type=int, default=3, help="timed calls per variant (median)"),
    "--threads": dict(type=int, default=torch.get_num_threads(), help="torch threads"),
    "--device": dict(default="cpu"),
}


def inputs(cfg, count: int, size: list[int]) -> list[torch.Tensor]:
    """``count`` random (H, W, 3) uint8 images through the experiment's
    evaluation transform: (3, h, w) float32 model inputs."""
    transform = instantiate(cfg.dataset.val.transforms)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]
    return [transform(im, np.zeros(size, np.uint8))[0] for im in images]


def main(argv: list[str]) -> dict:
    """Times each variant, prints the table, returns the figures."""
    args = harness.parse_args(argv, __name__, __doc__, OPTIONS)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = compose("train", [f"experiment={args.experiment}"])
    model = harness.build_model(cfg).eval().to(args.device)
    evaluator = instantiate(cfg.evaluator)
    tensors = inputs(cfg, args.images, args.size)
    sizes = [tuple(args.size)] * len(tensors)

    def one_at_a_time() -> list[torch.Tensor]:
        return [
            evaluator.predict_masks(model, [t], [s])[0] for t, s in zip(tensors, sizes, strict=True)
        ]

    variants = {"one at a time": one_at_a_time}
    for b in (int(v) for v in args.batch_sizes.split(",")):
        variants[f"batch {b}"] = lambda b=b: evaluator.predict_masks(model, tensors, sizes, b)
    reference = one_at_a_time()
    results: dict = {}
    for name, run in variants.items():
        harness.log(name)
        equal = all(torch.equal(a, b) for a, b in zip(run(), reference, strict=True))  # warm-up
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
        rate = r["images_per_s"]
        row = [name, f"{1000 / rate:.1f}", f"{rate:.2f}", harness.ratio(rate, base)]
        rows.append([*row, "yes" if r["equal"] else "NO"])
    h, w = args.size
    harness.print_table(
        f"batched prediction, experiment={args.experiment}, {args.images} images of {h}x{w}, "
        f"{args.device}, {args.threads} thread(s), median of {args.repeats}",
        rows,
    )
    return {
        "config": vars(args),
        "env": harness.environment(args.device, args.threads),
        "results": results,
    }
