"""A tiny segmentor without cross-sample coupling (GroupNorm, no dropout), so
that 2 processes × batch b must reproduce 1 process × batch 2b exactly."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class TinyBackbone(nn.Module):
    """(B, 3, H, W) -> four feature maps (B, 16, H/2, W/2)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.GroupNorm(4, 16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1),
            nn.GroupNorm(4, 16),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        f = self.body(x)
        return [f, f, f, f]


class TinyHead(nn.Module):
    """features[-1] (B, 16, h, w) -> logits (B, K, h, w)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(16, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return self.classifier(features[-1])
