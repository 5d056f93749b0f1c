"""Asymmetric Pyramid Non-local Block (APNB)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import Tensor, nn

from ann.models.heads.attention import (
    NORMALIZATIONS,
    PyramidPooling,
    attend,
    block_output,
    check_choice,
    check_impl,
    check_pool_sizes,
    init_block_output,
    linear_1x1,
    num_anchors,
    project,
    tokens,
)
from ann.models.layers import ConvBNReLU

log = logging.getLogger(__name__)


class APNB(nn.Module):
    """Self-attention whose keys and values are sampled by pyramid pooling.

    Queries and keys share one 1×1 conv+BN+ReLU projection (as the reference
    code does); values are a plain 1×1 conv; the context goes through Wo
    (1×1 conv, zero-initialised so the block starts as a plain fuse of x)
    and is fused with the input by a 1×1 conv+BN+ReLU over
    cat[context, x], then Dropout2d.

    The value conv is applied after pooling (a 1×1 conv commutes with
    average pooling), and the fuse never builds the concatenation; see
    :func:`ann.models.heads.attention.fused_output`.

    Ablation options (defaults: the paper's model): ``pool_sizes`` any
    non-empty list (S = Σ n² anchors, logged); ``normalization`` f of the
    similarity map, ``"softmax"`` | ``"rescale"`` (÷ S) | ``"none"``;
    ``output`` ``"concat"`` (fuse(cat[Wo(O), X])) | ``"residual"``
    (Wo(O) + X, needs ``out_channels == in_channels``).

    forward: (B, in_channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        key_channels: int,
        value_channels: int,
        pool_sizes: Sequence[int] = (1, 3, 6, 8),
        dropout: float = 0.05,
        attention: str = "sdpa",
        normalization: str = "softmax",
        output: str = "concat",
    ) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.attention = check_impl(attention)
        self.normalization = check_choice("normalization", normalization, NORMALIZATIONS)
        sizes = check_pool_sizes(pool_sizes)
        self.query_key = ConvBNReLU(in_channels, key_channels, 1)
        self.value = nn.Conv2d(in_channels, value_channels, 1)
        self.pool = PyramidPooling(sizes)
        init_block_output(self, output, value_channels, in_channels, out_channels, True, dropout)
        log.info(
            "APNB: pool sizes %s, S = %d anchors; normalization %s, output %s",
            sizes,
            num_anchors(sizes),
            normalization,
            output,
        )

    def attention_context(self, x: Tensor) -> Tensor:
        """O_P = f(φᵀθ_P/√C')·γ_Pᵀ: (B, C, H, W) -> (B, N, value_channels)."""
        qk = project(self.query_key, x)  # (B, C', H, W)
        query = tokens(qk)  # (B, N, C')
        key = self.pool(qk).transpose(1, 2)  # (B, S, C')
        value = linear_1x1(self.value, self.pool(x)).transpose(1, 2)  # (B, S, Cv)
        scale = self.key_channels**-0.5
        return attend(query, key, value, scale, self.attention, self.normalization)

    def context(self, x: Tensor) -> Tensor:
        """Attention context before Wo: (B, C, H, W) -> (B, value_channels, H, W)."""
        b, _, h, w = x.shape
        return self.attention_context(x).transpose(1, 2).reshape(b, -1, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return block_output(self, self.attention_context(x), x)
