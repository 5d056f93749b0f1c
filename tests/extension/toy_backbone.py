"""A backbone from outside the package (docs/contributing.md, "A backbone"):
four stages of stride-2 3×3 convs, output stride 16 at res5."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class ToyBackbone(nn.Module):
    """forward: (B, 3, H, W) -> [res2 (B, C2, H/2, W/2), res3 (H/4), res4 (H/8),
    res5 (H/16)] with C2..C5 = ``out_channels``, which the heads' configs read
    as ``${model.backbone.out_channels[i]}``."""

    def __init__(self, out_channels: Sequence[int] = (8, 16, 32, 64)) -> None:
        super().__init__()
        self.out_channels = list(out_channels)
        widths = [3, *self.out_channels]
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )
            for cin, cout in zip(widths[:-1], widths[1:], strict=True)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
