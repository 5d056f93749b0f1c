"""Asymmetric Fusion Non-local Block (AFNB)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ann.models.heads.attention import PyramidPooling, attend, linear_1x1, project, tokens
from ann.models.heads.block import _AttentionBlock
from ann.models.heads.options import check_pool_sizes, num_anchors
from ann.models.layers import ConvBNReLU

log = logging.getLogger(__name__)


class AFNB(_AttentionBlock):
    """Cross-level attention: queries from the high-level map, keys and values
    from the low-level map sampled by pyramid pooling.

    Key and query projections are separate 1×1 conv+BN+ReLU; the value is a
    1×1 conv (applied after pooling, which it commutes with); Wo is
    zero-initialised; the fuse is a 1×1 conv + BN over cat[context, high]
    with no ReLU, then Dropout2d(``dropout``).

    Ablation options (defaults: the paper's model): ``pool_sizes`` any
    non-empty list (S = Σ n² anchors, logged), or ``None`` for the paper's
    dense fusion block (FNB: every low-level position a key and a value,
    S = h·w); ``normalization`` ``"softmax"`` | ``"rescale"`` (÷ S) |
    ``"none"``; ``output`` ``"concat"`` | ``"residual"`` (Wo(O) + high, needs
    ``out_channels == high_channels``).

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
        pool_sizes: Sequence[int] | None = (1, 3, 6, 8),
        dropout: float = 0.05,
        attention: str = "sdpa",
        normalization: str = "softmax",
        output: str = "concat",
    ) -> None:
        super().__init__(key_channels, attention, normalization)
        self.query = ConvBNReLU(high_channels, key_channels, 1)
        self.key = ConvBNReLU(low_channels, key_channels, 1)
        self.value = nn.Conv2d(low_channels, value_channels, 1)
        # No parameters either way: the state_dict keys do not depend on it.
        self.pool = None if pool_sizes is None else PyramidPooling(check_pool_sizes(pool_sizes))
        self._init_output(output, value_channels, high_channels, out_channels, False, dropout)
        anchors = (
            "dense keys and values (FNB), S = h*w of the low-level map"
            if self.pool is None
            else f"pool sizes {self.pool.sizes}, S = {num_anchors(self.pool.sizes)} anchors"
        )
        log.info("AFNB: %s; normalization %s, output %s", anchors, normalization, output)

    def attention_context(self, low: Tensor, high: Tensor) -> Tensor:
        """f(φ(high)ᵀθ_P(low)/√C')·γ_P(low)ᵀ -> (B, N, value_channels), N = H*W."""
        query = tokens(project(self.query, high))  # (B, N, C')
        if self.pool is None:  # dense: S = h*w
            key = tokens(project(self.key, low))  # (B, S, C')
            value = F.conv2d(low, self.value.weight, self.value.bias)
            value = tokens(value)  # (B, S, Cv)
        else:
            key = self.pool(project(self.key, low)).transpose(1, 2)  # (B, S, C')
            value = linear_1x1(self.value, self.pool(low)).transpose(1, 2)  # (B, S, Cv)
        scale = self.key_channels**-0.5
        return attend(query, key, value, scale, self.attention, self.normalization)
