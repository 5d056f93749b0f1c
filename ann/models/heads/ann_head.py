"""The ANN decode head: AFNB -> bottleneck -> APNB -> classifier."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ann.models.heads.afnb import AFNB
from ann.models.heads.apnb import APNB
from ann.models.layers import ConvBNReLU


class ANNHead(nn.Module):
    """AFNB fuses res4 (keys/values) into res5 (queries); a 3×3 bottleneck
    reduces to ``channels``; APNB adds pyramid self-attention; dropout and a
    1×1 conv classify.

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
        block_dropout: float = 0.05,
        dropout: float = 0.1,
        attention: str = "sdpa",
        in_index: Sequence[int] = (2, 3),
    ) -> None:
        super().__init__()
        low_channels, high_channels = in_channels
        fusion_channels = fusion_channels or high_channels
        self.in_index = tuple(in_index)
        self.fusion = AFNB(
            low_channels,
            high_channels,
            fusion_channels,
            key_channels,
            value_channels,
            pool_sizes=pool_sizes,
            dropout=block_dropout,
            attention=attention,
        )
        self.bottleneck = ConvBNReLU(fusion_channels, channels, 3, padding=1)
        self.context = APNB(
            channels,
            channels,
            key_channels,
            value_channels,
            pool_sizes=pool_sizes,
            dropout=block_dropout,
            attention=attention,
        )
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        low, high = (features[i] for i in self.in_index)
        x = self.context(self.bottleneck(self.fusion(low, high)))
        return self.classifier(self.dropout(x))
