"""A tiny backbone for the fast training-parity tests: both reference
networks and this project's model take it as their backbone (same module,
same ``backbone.stem``/``layer3``/``layer4`` keys), so a test can compare the
heads, losses and optimizer steps at a fraction of ResNet-50's cost."""

from __future__ import annotations

from torch import Tensor, nn


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False)
    return [conv, nn.BatchNorm2d(cout), nn.ReLU()]


class TinyBackbone(nn.Module):
    """Output stride 8: (B, 3, H, W) -> [stem, stem, res4 (B, low, H/8, W/8),
    res5 (B, high, H/8, W/8)]; features 2 and 3 are what the heads read.
    Keyword arguments of a ResNet backbone config are accepted and ignored."""

    def __init__(self, low: int = 16, high: int = 32, **_: object) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(3, 8, stride=2))
        self.layer3 = nn.Sequential(
            *_conv_bn_relu(8, low, stride=2), *_conv_bn_relu(low, low, stride=2)
        )
        self.layer4 = nn.Sequential(*_conv_bn_relu(low, high, dilation=2))

    def forward(self, x: Tensor) -> list[Tensor]:
        stem = self.stem(x)
        res4 = self.layer3(stem)
        return [stem, stem, res4, self.layer4(res4)]
