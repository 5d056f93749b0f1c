"""The attention core shared by APNB, AFNB and the dense non-local block.

Notation follows the paper: queries phi over all N = H*W positions, keys theta
and values gamma either dense (N positions) or sampled by pyramid pooling
(S = sum(s*s) anchors).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ATTENTION_IMPLS = ("sdpa", "matmul")


class PyramidPooling(nn.Module):
    """Samples S = sum(s*s) anchors by adaptive average pooling to each size.

    (B, C, H, W) -> (B, C, S); S = 110 for the default sizes (1, 3, 6, 8).
    """

    def __init__(self, sizes: Sequence[int] = (1, 3, 6, 8)) -> None:
        super().__init__()
        if not sizes:
            raise ValueError("pool_sizes must name at least one size, e.g. (1, 3, 6, 8)")
        self.sizes = tuple(int(s) for s in sizes)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([F.adaptive_avg_pool2d(x, s).flatten(2) for s in self.sizes], dim=2)


def attend(query: Tensor, key: Tensor, value: Tensor, scale: float, impl: str = "sdpa") -> Tensor:
    """softmax(query keyᵀ · scale) · value, the softmax over the anchors.

    Args:
        query: (B, N, C') queries phi, one per output position.
        key: (B, S, C') keys theta (sampled or dense).
        value: (B, S, Cv) values gamma at the same anchors as ``key``.
        scale: multiplier of the similarity (key_channels ** -0.5).
        impl: ``"sdpa"`` (torch's fused scaled_dot_product_attention) or
            ``"matmul"`` (explicit similarity map, kept as the reference path).

    Returns:
        (B, N, Cv) context for every query.
    """
    if impl == "sdpa":
        out = F.scaled_dot_product_attention(
            query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1), scale=scale
        )
        return out.squeeze(1)
    if impl == "matmul":
        sim = torch.bmm(query, key.transpose(1, 2)).mul_(scale)
        return torch.bmm(sim.softmax(dim=-1), value)
    raise ValueError(f"attention impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
