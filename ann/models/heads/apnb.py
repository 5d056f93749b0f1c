"""Asymmetric Pyramid Non-local Block (APNB)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.errors import ConfigError
from ann.models.heads.attention import PyramidPooling, attend, linear_1x1, project, tokens
from ann.models.heads.block import _AttentionBlock
from ann.models.heads.options import check_pool_sizes, num_anchors
from ann.models.layers import ConvBNReLU

log = logging.getLogger(__name__)


class APNB(_AttentionBlock):
    """Self-attention whose keys and values are sampled by pyramid pooling.

    Queries and keys share one 1×1 conv+BN+ReLU projection (as the reference
    code does); values are a plain 1×1 conv; the context goes through Wo
    (1×1 conv, zero-initialised so the block starts as a plain fuse of x)
    and is fused with the input by a 1×1 conv+BN+ReLU over
    cat[context, x], then Dropout2d(``dropout``).

    The value conv is applied after pooling (a 1×1 conv commutes with
    average pooling), and the fuse never builds the concatenation; see
    :func:`ann.models.heads.attention.fused_output`.

    ``query_key_bn_updates``: how many times a training step moves the
    shared projection's BN running statistics. Both references (mmseg's
    ``_SelfAttentionBlock`` with ``share_key_query``, the authors' APNB) call
    the shared module once for the query and once for the key, so its
    running mean/var take two momentum steps (effective momentum
    1-(1-m)² = 0.19) and ``num_batches_tracked`` counts 2 per step: the
    default 2 does the same (the second update re-normalises the same conv
    output without gradient, so outputs and gradients are those of one call).
    1 updates once. Eval and train-mode outputs do not depend on it.

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
        query_key_bn_updates: int = 2,
    ) -> None:
        super().__init__(key_channels, attention, normalization)
        if query_key_bn_updates not in (1, 2):
            raise ConfigError(
                f"query_key_bn_updates must be 1 or 2 (the references: 2), "
                f"got {query_key_bn_updates!r}"
            )
        self.query_key_bn_updates = query_key_bn_updates
        sizes = check_pool_sizes(pool_sizes)
        self.query_key = ConvBNReLU(in_channels, key_channels, 1)
        self.value = nn.Conv2d(in_channels, value_channels, 1)
        self.pool = PyramidPooling(sizes)
        self._init_output(output, value_channels, in_channels, out_channels, True, dropout)
        log.info(
            "APNB: pool sizes %s, S = %d anchors; normalization %s, output %s",
            sizes,
            num_anchors(sizes),
            normalization,
            output,
        )

    def _query_key(self, x: Tensor) -> Tensor:
        """The shared projection φ = θ: (B, C, H, W) -> (B, C', H, W)."""
        bn = self.query_key[1]
        if not (bn.training and self.query_key_bn_updates == 2):
            return project(self.query_key, x)
        y = self.query_key[0](x)
        out = F.relu(bn(y))
        with torch.no_grad():
            # The references' second call (the key's) on the same input: the
            # same batch statistics, one more running-stat update.
            bn(y)
        return out

    def attention_context(self, x: Tensor) -> Tensor:
        """O_P = f(φᵀθ_P/√C')·γ_Pᵀ: (B, C, H, W) -> (B, N, value_channels)."""
        qk = self._query_key(x)  # (B, C', H, W)
        query = tokens(qk)  # (B, N, C')
        key = self.pool(qk).transpose(1, 2)  # (B, S, C')
        value = linear_1x1(self.value, self.pool(x)).transpose(1, 2)  # (B, S, Cv)
        scale = self.key_channels**-0.5
        return attend(query, key, value, scale, self.attention, self.normalization)
