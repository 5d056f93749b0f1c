"""Parameters and eval-forward FLOPs (FlopCounterMode, a multiply-add is 2) of
the segmentors per input size, counted on the meta device, and the time of one
fp32 training step (the trainer's train_step) at a small input on CPU."""

from __future__ import annotations

import itertools

import torch
from torch.utils.flop_counter import FlopCounterMode

from ann.benchmarks import harness
from ann.benchmarks.train import synthetic_batch
from ann.engine.build import build_training

OPTIONS = {
    "--models": dict(default="ann_r50,ann_r101"),
    "--sizes": dict(default="512x1024,769x769"),
    "--step-size": dict(default="129x129"),
    "--step-batch": dict(type=int, default=2),
    "--repeats": dict(type=int, default=2),
    "--no-step": dict(action="store_true", help="skip the train-step timing"),
}


def count_flops(model_name: str, h: int, w: int) -> tuple[int, int, dict[str, int]]:
    """(params, total FLOPs, FLOPs per top-level module) of an eval forward
    of (1, 3, h, w), counted on the meta device."""
    with torch.device("meta"):
        model = harness.build_model(harness.model_config(model_name)).eval()
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False, depth=2)
    with counter, torch.no_grad():
        model(torch.empty(1, 3, h, w, device="meta"))
    per_module = {
        k: int(sum(v.values()))
        for k, v in counter.get_flop_counts().items()
        if k.count(".") == 1 and k != "Global"
    }
    return params, int(counter.get_total_flops()), per_module


def train_step_time(model_name: str, h: int, w: int, batch: int, repeats: int) -> float:
    """Median seconds of one fp32 training step at (batch, 3, h, w) on the CPU,
    after one that warms up oneDNN's primitives."""
    speed = ["trainer.amp=false", "trainer.channels_last=false", f"trainer.batch_size={batch}"]
    cfg = harness.model_config(model_name, *speed, f"dataset.train.transforms.crop_size=[{h},{w}]")
    device = torch.device("cpu")
    torch.manual_seed(0)
    parts = build_training(cfg, harness.build_model(cfg).train(), device)
    batches = itertools.repeat(synthetic_batch(cfg, device))
    return harness.median_after(lambda: parts.step(batches), 1, repeats, device)


def main(argv: list[str]) -> dict:
    """Prints params/FLOPs and train-step times; returns them."""
    args = harness.parse_args(argv, __name__, __doc__, OPTIONS)
    results: dict = {}
    steps = []
    rows = [["model", "input", "params M", "GFLOPs", "GFLOPs per module"]]
    for name in args.models.split(","):
        for size in args.sizes.split(","):
            params, flops, split = count_flops(name, *harness.parse_size(size))
            results.setdefault(name, {})[size] = {"params": params, "flops": flops, "split": split}
            parts = ", ".join(f"{k.split('.')[-1]} {v / 1e9:.0f}" for k, v in split.items())
            rows.append([name, size, f"{params / 1e6:.2f}", f"{flops / 1e9:.1f}", parts])
        if not args.no_step:
            (h, w), b = harness.parse_size(args.step_size), args.step_batch
            t = train_step_time(name, h, w, b, args.repeats)
            key = f"train_step_{b}x{args.step_size}"
            results[name][key] = {"time_s": t, "threads": torch.get_num_threads()}
            steps.append(f"{name} train step {b}x3x{args.step_size}: {t:.2f} s")
    harness.print_table("model: parameters and eval-forward FLOPs (meta device)", rows)
    print("\n".join(steps))
    return results
