"""Dense non-local block: the O(N²) baseline APNB is measured against."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ann.models.heads.attention import attend, check_impl, fused_output, init_output, project
from ann.models.layers import ConvBNReLU


class NonLocal2d(nn.Module):
    """APNB's layout without sampling: every position is a key and a value.

    Shares APNB's lean fuse, so a benchmark against APNB isolates the cost of
    dense attention. forward: (B, in_channels, H, W) -> (B, out_channels, H, W);
    cost O(C'N²) time, O(N²) memory on the matmul path.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        key_channels: int,
        value_channels: int,
        dropout: float = 0.05,
        attention: str = "matmul",
    ) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.attention = check_impl(attention)
        self.query_key = ConvBNReLU(in_channels, key_channels, 1)
        self.value = nn.Conv2d(in_channels, value_channels, 1)
        init_output(self, value_channels, in_channels, out_channels, True, dropout)

    def attention_context(self, x: Tensor) -> Tensor:
        """softmax(φᵀφ/√C')·γᵀ over all N positions: -> (B, N, value_channels)."""
        qk = project(self.query_key, x).flatten(2).transpose(1, 2)  # (B, N, C')
        value = F.conv2d(x, self.value.weight, self.value.bias).flatten(2).transpose(1, 2)
        return attend(qk, qk, value, self.key_channels**-0.5, self.attention)

    def context(self, x: Tensor) -> Tensor:
        """Attention context before Wo: (B, C, H, W) -> (B, value_channels, H, W)."""
        b, _, h, w = x.shape
        return self.attention_context(x).transpose(1, 2).reshape(b, -1, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return fused_output(self, self.attention_context(x), x)
