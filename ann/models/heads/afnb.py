"""Asymmetric Fusion Non-local Block (AFNB)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ann.models.heads.attention import (
    PyramidPooling,
    attend,
    check_impl,
    fused_output,
    init_output,
    linear_1x1,
    project,
)
from ann.models.layers import ConvBNReLU


class AFNB(nn.Module):
    """Cross-level attention: queries from the high-level map, keys and values
    from the low-level map sampled by pyramid pooling.

    Key and query projections are separate 1×1 conv+BN+ReLU; the value is a
    1×1 conv (applied after pooling, which it commutes with); Wo is
    zero-initialised; the fuse is a 1×1 conv + BN over cat[context, high]
    with no ReLU, then Dropout2d.

    forward(low (B, low_channels, h, w), high (B, high_channels, H, W))
        -> (B, out_channels, H, W).
    """

    def __init__(
        self,
        low_channels: int,
        high_channels: int,
        out_channels: int,
        key_channels: int,
        value_channels: int,
        pool_sizes: Sequence[int] = (1, 3, 6, 8),
        dropout: float = 0.05,
        attention: str = "sdpa",
    ) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.attention = check_impl(attention)
        self.query = ConvBNReLU(high_channels, key_channels, 1)
        self.key = ConvBNReLU(low_channels, key_channels, 1)
        self.value = nn.Conv2d(low_channels, value_channels, 1)
        self.pool = PyramidPooling(pool_sizes)
        init_output(self, value_channels, high_channels, out_channels, False, dropout)

    def attention_context(self, low: Tensor, high: Tensor) -> Tensor:
        """softmax(φ(high)ᵀθ_P(low)/√C')·γ_P(low)ᵀ -> (B, N, value_channels), N = H*W."""
        query = project(self.query, high).flatten(2).transpose(1, 2)  # (B, N, C')
        key = self.pool(project(self.key, low)).transpose(1, 2)  # (B, S, C')
        value = linear_1x1(self.value, self.pool(low)).transpose(1, 2)  # (B, S, Cv)
        return attend(query, key, value, self.key_channels**-0.5, self.attention)

    def context(self, low: Tensor, high: Tensor) -> Tensor:
        """Attention context before Wo: -> (B, value_channels, H, W)."""
        b, _, h, w = high.shape
        return self.attention_context(low, high).transpose(1, 2).reshape(b, -1, h, w)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        return fused_output(self, self.attention_context(low, high), high)
