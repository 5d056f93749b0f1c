"""A head from outside the package (docs/contributing.md, "A head"): a 3×3
conv + BN + ReLU on res5 and a 1×1 classifier."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class ToyHead(nn.Module):
    """forward(features) reads ``features[in_index]`` (B, in_channels, H, W)
    and returns logits (B, num_classes, H, W)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 16, in_index: int = 3):
        super().__init__()
        self.in_index = in_index
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return self.classifier(self.conv(features[self.in_index]))
