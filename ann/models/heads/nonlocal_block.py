"""Dense non-local block: the O(N²) baseline APNB is measured against."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ann.models.heads.attention import attend
from ann.models.layers import ConvBNReLU


class NonLocal2d(nn.Module):
    """APNB's layout without sampling: every position is a key and a value.

    forward: (B, in_channels, H, W) -> (B, out_channels, H, W); cost O(C'N²).
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
        self.attention = attention
        self.query_key = ConvBNReLU(in_channels, key_channels, 1)
        self.value = nn.Conv2d(in_channels, value_channels, 1)
        self.out_proj = nn.Conv2d(value_channels, out_channels, 1)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)
        self.fuse = ConvBNReLU(out_channels + in_channels, out_channels, 1)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        qk = self.query_key(x).flatten(2).transpose(1, 2)  # (B, N, C')
        value = self.value(x).flatten(2).transpose(1, 2)  # (B, N, Cv)
        out = attend(qk, qk, value, self.key_channels**-0.5, self.attention)
        context = self.out_proj(out.transpose(1, 2).reshape(b, -1, h, w))
        return self.dropout(self.fuse(torch.cat([context, x], dim=1)))
