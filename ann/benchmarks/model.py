"""python tools/benchmark.py model [--models ann_r50,ann_r101] [--sizes 512x1024,769x769]
[--step-size 129x129] [--step-batch 2] [--repeats 2]

Parameters and FLOPs (``torch.utils.flop_counter.FlopCounterMode``; one
multiply-add counts as 2 FLOPs) of the configured segmentors in eval at each
input size, counted on the meta device (no memory, no compute), and the time
of one training step (forward, loss, backward, SGD) at a small input.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from ann.models.pretrained import without_pretrained


def _compose(model: str):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    config_dir = str(Path(__file__).resolve().parents[2] / "configs")
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        return compose("train", [f"model={model}", "dataset=cityscapes"])


def count_flops(model_name: str, h: int, w: int) -> tuple[int, int, dict[str, int]]:
    """(params, total FLOPs, FLOPs per top-level module) of an eval forward
    of (1, 3, h, w), counted on the meta device."""
    cfg = _compose(model_name)
    with torch.device("meta"):
        model = instantiate(without_pretrained(cfg.model)).eval()
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
    """Median seconds of one SGD training step at (batch, 3, h, w) on CPU."""
    cfg = _compose(model_name)
    torch.manual_seed(0)
    model = instantiate(without_pretrained(cfg.model)).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, h, w)
    target = torch.randint(0, cfg.dataset.num_classes, (batch, h, w))
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        loss = model.compute_loss(model(x), target)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step warms up oneDNN primitives
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str]) -> dict:
    """Prints params/FLOPs and train-step times; returns them."""
    p = argparse.ArgumentParser(prog="benchmark.py model", description=__doc__.split("\n")[0])
    p.add_argument("--models", default="ann_r50,ann_r101")
    p.add_argument("--sizes", default="512x1024,769x769")
    p.add_argument("--step-size", default="129x129")
    p.add_argument("--step-batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-step", action="store_true", help="skip the train-step timing")
    args = p.parse_args(argv)
    results: dict = {}
    print(f"{'model':10s} {'input':10s} {'params M':>9s} {'GFLOPs':>9s}  split")
    for name in args.models.split(","):
        for size in args.sizes.split(","):
            h, w = (int(v) for v in size.split("x"))
            params, flops, split = count_flops(name, h, w)
            results.setdefault(name, {})[size] = {"params": params, "flops": flops, "split": split}
            parts = ", ".join(f"{k.split('.')[-1]} {v / 1e9:.0f}" for k, v in split.items())
            print(f"{name:10s} {size:10s} {params / 1e6:9.2f} {flops / 1e9:9.1f}  {parts}")
        if not args.no_step:
            sh, sw = (int(v) for v in args.step_size.split("x"))
            t = train_step_time(name, sh, sw, args.step_batch, args.repeats)
            key = f"train_step_{args.step_batch}x{args.step_size}"
            results[name][key] = {"time_s": t, "threads": torch.get_num_threads()}
            print(f"{name:10s} train step {args.step_batch}x3x{args.step_size}: {t:.2f} s")
    return results
