"""A per-pixel classifier on the demo data: how far colour alone gets.

Fits multinomial logistic regression on each pixel's RGB (a 1×1 conv, no
context at all) to the training split and reports val mIoU with the same
metrics as tools/eval.py. The demo's ANN should do far better.

    python scripts/pixel_baseline.py [--root data/shapes] [--steps 300]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from ann.data.synthetic import SHAPES_CLASSES, ShapesDataset
from ann.evaluation.metrics import compute_metrics, confusion_matrix, format_table


def load_pixels(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All pixels of a split: features (P, 3) in [0, 1], labels (P,) int64."""
    ds = ShapesDataset(root, split)
    xs, ys = [], []
    for image_path, mask_path in ds.samples:
        xs.append(np.asarray(Image.open(image_path)).reshape(-1, 3))
        ys.append(np.asarray(Image.open(mask_path)).reshape(-1))
    x = torch.from_numpy(np.concatenate(xs)).float() / 255.0
    return x, torch.from_numpy(np.concatenate(ys)).long()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--root", default="data/shapes", help="the shapes data (default: data/shapes)"
    )
    parser.add_argument("--steps", type=int, default=300, help="optimisation steps (default: 300)")
    args = parser.parse_args()
    x, y = load_pixels(args.root, "train")
    # A fixed random subset keeps L-BFGS quick; 200k pixels pin 8 weights down.
    keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:200_000]
    x, y = x[keep], y[keep]
    k = len(SHAPES_CLASSES)
    # Quadratic colour features let the linear model carve colour regions.

    def feats(v: torch.Tensor) -> torch.Tensor:
        return torch.cat([v, v**2, v[:, [0]] * v[:, [1]], v[:, [1]] * v[:, [2]]], 1)

    linear = torch.nn.Linear(8, k)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=args.steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(feats(x)), y)
        loss.backward()
        return loss

    opt.step(closure)
    xv, yv = load_pixels(args.root, "val")
    with torch.no_grad():
        pred = linear(feats(xv)).argmax(1)
    metrics = compute_metrics(confusion_matrix(pred, yv, k), SHAPES_CLASSES)
    print("per-pixel colour classifier (logistic regression), val:")
    print(format_table(metrics))


if __name__ == "__main__":
    main()
