"""Outputs of the attention blocks and heads at their default options, for
the bit-for-bit test of tests/models/test_ablation.py (the ablation options must not
change what the defaults compute).

``python tests/head_snapshot.py`` rewrites tests/snapshots/default_head_outputs.pt
from the current code; run it only when a change of the defaults' numbers is
intended. Each case stores its state_dict keys and the fp64 output (eval) or
output and input gradients (train, dropout seeded), for weights and inputs
drawn from fixed seeds. The test compares to a tolerance rather than bit for
bit: another instruction set (AVX2 against AVX-512) sums in another order, so
even fp64 results differ in their last bits from machine to machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ann.models.heads import AFNB, APNB, ANNHead, NonLocal2d

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "default_head_outputs.pt"


def cases() -> dict[str, tuple[Callable[[], nn.Module], str]]:
    """name -> (constructor at default options, input kind)."""
    return {
        "apnb_sdpa": (lambda: APNB(16, 16, 8, 6), "x"),
        "apnb_matmul": (lambda: APNB(16, 16, 8, 6, attention="matmul"), "x"),
        "apnb_sizes_1_2": (lambda: APNB(16, 24, 8, 6, pool_sizes=(1, 2)), "x"),
        "afnb_sdpa": (lambda: AFNB(12, 16, 20, 8, 6), "low_high"),
        "afnb_matmul": (lambda: AFNB(12, 16, 20, 8, 6, attention="matmul"), "low_high"),
        "nonlocal_matmul": (lambda: NonLocal2d(16, 16, 8, 6), "x"),
        "nonlocal_sdpa": (lambda: NonLocal2d(16, 16, 8, 6, attention="sdpa"), "x"),
        "ann_head": (lambda: ANNHead([12, 16], 8, 5, 4, 6, fusion_channels=16), "features"),
        # model=nonlocal_r50's head (decode_head=nonlocal), recorded when it was
        # a class of its own (NonLocalHead(16, 8, 5, 4, 6)): the ANN head with
        # no fusion block and a dense context block computes what it did.
        "nonlocal_head": (
            lambda: ANNHead(
                [16, 16], 8, 5, 4, 6, block_dropout=0.05, fusion="none", context="dense"
            ),
            "features",
        ),
    }


def fill_weights(module: nn.Module) -> nn.Module:
    """Every parameter and BN statistic drawn from one seeded generator in
    state_dict order: independent of how ``__init__`` consumes the global RNG,
    with non-trivial BN statistics and a non-zero Wo (zero at init)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            r = torch.rand(t.shape, generator=generator, dtype=t.dtype)
            if name.endswith("running_var") or (name.endswith("weight") and t.dim() == 1):
                t.copy_(0.5 + r)  # positive variances and BN scales in [0.5, 1.5)
            else:
                t.copy_((r - 0.5) * 0.4)
    return module


def make_inputs(kind: str) -> list[Tensor]:
    """(B, C, H, W) inputs of odd sizes, so no pooling bin divides evenly."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 11, 9, generator=generator)
    low = torch.randn(2, 12, 11, 9, generator=generator)
    if kind == "x":
        return [x]
    if kind == "low_high":
        return [low, x]
    return [torch.zeros(0), torch.zeros(0), low, x]  # features: res4, res5 at 2, 3


def run(module: nn.Module, kind: str, inputs: list[Tensor], train: bool) -> list[Tensor]:
    """The fp64 output (and, training, the input gradients) of ``module``."""
    module.double().train(train)
    inputs = [t.double().requires_grad_(train and t.numel() > 0) for t in inputs]
    torch.manual_seed(123)  # the Dropout2d masks in training
    with torch.set_grad_enabled(train):
        out = module(inputs) if kind == "features" else module(*inputs)
    if not train:
        return [out.detach()]
    out.square().sum().backward()
    return [out.detach()] + [t.grad for t in inputs if t.grad is not None]


def main() -> None:
    torch.set_num_threads(2)  # as tests/conftest.py: results can depend on it
    snapshot = {}
    for name, (make, kind) in cases().items():
        inputs = make_inputs(kind)
        keys = list(make().state_dict())
        entry: dict[str, object] = {"keys": keys}
        for mode in ("eval", "train"):
            entry[mode] = run(fill_weights(make()), kind, inputs, mode == "train")
        snapshot[name] = entry
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    torch.save(snapshot, SNAPSHOT)
    print(f"{len(snapshot)} cases -> {SNAPSHOT}")


if __name__ == "__main__":
    main()
