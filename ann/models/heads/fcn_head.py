"""FCN head: the auxiliary head on res4, and the no-attention ablation."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ann.models.layers import ConvBNReLU


class FCNHead(nn.Module):
    """3×3 conv+BN+ReLU -> Dropout2d -> 1×1 conv to classes.

    forward(features) reads ``features[in_index]`` (B, in_channels, H, W) and
    returns logits (B, num_classes, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        in_index: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_index = in_index
        self.conv = ConvBNReLU(in_channels, channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return self.classifier(self.dropout(self.conv(features[self.in_index])))
