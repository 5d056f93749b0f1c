"""Dense non-local block: the O(N²) baseline APNB is measured against."""

from __future__ import annotations

import logging

import torch.nn.functional as F
from torch import Tensor, nn

from ann.models.heads.attention import attend, project, tokens
from ann.models.heads.block import _AttentionBlock
from ann.models.layers import ConvBNReLU

log = logging.getLogger(__name__)


class NonLocal2d(_AttentionBlock):
    """APNB's layout without sampling: every position is a key and a value.

    Shares APNB's lean fuse, so a benchmark against APNB isolates the cost of
    dense attention. forward: (B, in_channels, H, W) -> (B, out_channels, H, W);
    cost O(C'N²) time, O(N²) memory on the matmul path.

    ``normalization`` (``"softmax"`` | ``"rescale"`` (÷ N) | ``"none"``) and
    ``output`` (``"concat"`` | ``"residual"``) as in :class:`APNB`; without a
    softmax the SDPA path never builds the N×N map (see ``attend``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        key_channels: int,
        value_channels: int,
        dropout: float = 0.05,
        attention: str = "matmul",
        normalization: str = "softmax",
        output: str = "concat",
    ) -> None:
        super().__init__(key_channels, attention, normalization)
        self.query_key = ConvBNReLU(in_channels, key_channels, 1)
        self.value = nn.Conv2d(in_channels, value_channels, 1)
        self._init_output(output, value_channels, in_channels, out_channels, True, dropout)
        log.info(
            "Non-local: dense keys and values, S = N = H*W; normalization %s, output %s",
            normalization,
            output,
        )

    def attention_context(self, x: Tensor) -> Tensor:
        """f(φᵀφ/√C')·γᵀ over all N positions: -> (B, N, value_channels)."""
        qk = tokens(project(self.query_key, x))  # (B, N, C')
        value = tokens(F.conv2d(x, self.value.weight, self.value.bias))
        scale = self.key_channels**-0.5
        return attend(qk, qk, value, scale, self.attention, self.normalization)
