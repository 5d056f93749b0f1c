"""Dense non-local decode head: the ablation of ANN without sampling."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ann.models.heads.nonlocal_block import NonLocal2d
from ann.models.layers import ConvBNReLU


class NonLocalHead(nn.Module):
    """3×3 bottleneck -> dense :class:`NonLocal2d` -> Dropout2d -> 1×1 classifier.

    The ANN head's APNB stage with every position as key and value (no
    pyramid sampling, no AFNB), for the ablation "dense vs asymmetric".
    forward(features) reads ``features[in_index]`` (B, in_channels, H, W) and
    returns logits (B, num_classes, H, W). Attention memory is O((H·W)²) on
    the matmul path. ``normalization`` and ``output`` as in :class:`NonLocal2d`
    (the same head is ``ANNHead(fusion="none", context="dense")``).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        key_channels: int = 256,
        value_channels: int = 256,
        block_dropout: float = 0.05,
        dropout: float = 0.1,
        attention: str = "sdpa",
        in_index: int = 3,
        normalization: str = "softmax",
        output: str = "concat",
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.bottleneck = ConvBNReLU(in_channels, channels, 3, padding=1)
        self.context = NonLocal2d(
            channels,
            channels,
            key_channels,
            value_channels,
            block_dropout,
            attention,
            normalization=normalization,
            output=output,
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = self.context(self.bottleneck(features[self.in_index]))
        return self.classifier(self.dropout(x))
