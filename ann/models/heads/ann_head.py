"""The ANN decode head: AFNB -> bottleneck -> APNB -> classifier."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ann.models.heads.afnb import AFNB
from ann.models.heads.apnb import APNB
from ann.models.heads.nonlocal_block import NonLocal2d
from ann.models.heads.options import check_choice, check_probability
from ann.models.layers import ConvBNReLU

log = logging.getLogger(__name__)

# The blocks of the paper's ablations: the asymmetric (pyramid-sampled) block,
# its dense counterpart (FNB / NB), or none.
FUSIONS = ("afnb", "dense", "none")
CONTEXTS = ("apnb", "dense", "none")


class ANNHead(nn.Module):
    """AFNB fuses res4 (keys/values) into res5 (queries); a 3×3 bottleneck
    reduces to ``channels``; APNB adds pyramid self-attention; dropout and a
    1×1 conv classify.

    Where dropout (Dropout2d) applies, and how much, in training:
    ``block_dropout`` at the end of each block's fuse, ``fusion_dropout`` on
    AFNB's output before the bottleneck, ``dropout`` before the classifier.
    The defaults are mmsegmentation's ANNHead (no dropout in the blocks, its
    one Dropout2d(0.1) applied after AFNB and again before the classifier:
    0 / 0.1 / 0.1); the authors' network (MendelXu/ANN annn.py) is
    0.05 / 0 / 0. Dropout is the identity in eval.

    The composition is an ablation axis (defaults: the paper's model):
    ``fusion`` ``"afnb"`` | ``"dense"`` (FNB: AFNB without sampling) |
    ``"none"`` (the bottleneck reads res5; ``in_channels[0]`` unused) and
    ``context`` ``"apnb"`` | ``"dense"`` (NB: :class:`NonLocal2d`) |
    ``"none"``. ``pool_sizes``, ``normalization`` and ``output`` go to both
    blocks (see :class:`APNB`). The state_dict keys are the reference
    layout's (``fusion.*``, ``bottleneck.*``, ``context.*``, ``classifier.*``);
    an absent block has none.

    forward(features) reads ``features[in_index[0]]`` (B, low, h, w) and
    ``features[in_index[1]]`` (B, high, H, W) and returns logits
    (B, num_classes, H, W) at the feature resolution.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        num_classes: int,
        key_channels: int = 256,
        value_channels: int = 256,
        fusion_channels: int | None = None,
        pool_sizes: Sequence[int] = (1, 3, 6, 8),
        block_dropout: float = 0.0,
        dropout: float = 0.1,
        attention: str = "sdpa",
        in_index: Sequence[int] = (2, 3),
        fusion: str = "afnb",
        context: str = "apnb",
        normalization: str = "softmax",
        output: str = "concat",
        fusion_dropout: float = 0.1,
        query_key_bn_updates: int = 2,
    ) -> None:
        super().__init__()
        low_channels, high_channels = in_channels
        fusion_channels = fusion_channels or high_channels
        self.in_index = tuple(in_index)
        _check_options(fusion, context, fusion_dropout, dropout)
        # What AFNB, APNB and NonLocal2d all take.
        block = {
            "key_channels": key_channels,
            "value_channels": value_channels,
            "dropout": block_dropout,
            "attention": attention,
            "normalization": normalization,
            "output": output,
        }
        # Parameters are drawn from the RNG in creation order: keep this order.
        self.fusion: AFNB | None = _fusion_block(
            fusion, low_channels, high_channels, fusion_channels, pool_sizes, block
        )
        # mmseg reuses its classifier's Dropout2d here; a module of its own
        # draws the same masks (Dropout2d has no state).
        self.fusion_dropout = nn.Dropout2d(fusion_dropout)
        bottleneck_in = high_channels if self.fusion is None else fusion_channels
        self.bottleneck = ConvBNReLU(bottleneck_in, channels, 3, padding=1)
        self.context: nn.Module | None = _context_block(
            context, channels, pool_sizes, query_key_bn_updates, block
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        log.info("ANN head: fusion %s -> bottleneck -> context %s", fusion, context)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        low, high = (features[i] for i in self.in_index)
        x = high if self.fusion is None else self.fusion_dropout(self.fusion(low, high))
        x = self.bottleneck(x)
        if self.context is not None:
            x = self.context(x)
        return self.classifier(self.dropout(x))


def _check_options(fusion: str, context: str, fusion_dropout: float, dropout: float) -> None:
    """Raises ConfigError for a block choice or a dropout probability out of range."""
    check_choice("fusion", fusion, FUSIONS)
    check_choice("context", context, CONTEXTS)
    check_probability("fusion_dropout", fusion_dropout)
    check_probability("dropout", dropout)


def _fusion_block(
    fusion: str,
    low_channels: int,
    high_channels: int,
    out_channels: int,
    pool_sizes: Sequence[int],
    block: dict[str, Any],
) -> AFNB | None:
    """The block that fuses res4 (``low_channels``) into res5 (``high_channels``):
    AFNB (``"afnb"``), FNB (``"dense"``: AFNB without sampling) or None
    (``"none"``). ``block``: the options all blocks take."""
    if fusion == "none":
        return None
    sampled = None if fusion == "dense" else pool_sizes
    return AFNB(low_channels, high_channels, out_channels, pool_sizes=sampled, **block)


def _context_block(
    context: str,
    channels: int,
    pool_sizes: Sequence[int],
    query_key_bn_updates: int,
    block: dict[str, Any],
) -> nn.Module | None:
    """The self-attention block after the bottleneck, ``channels`` in and out:
    APNB (``"apnb"``), NB (``"dense"``: :class:`NonLocal2d`) or None
    (``"none"``). ``block``: the options all blocks take."""
    if context == "apnb":
        return APNB(
            channels,
            channels,
            pool_sizes=pool_sizes,
            query_key_bn_updates=query_key_bn_updates,
            **block,
        )
    if context == "dense":
        return NonLocal2d(channels, channels, **block)
    return None
