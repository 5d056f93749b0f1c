"""Small building blocks shared by the heads."""

from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> optional ReLU.

    Maps (B, in_channels, H, W) to (B, out_channels, H', W').
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        padding: int = 0,
        dilation: int = 1,
        relu: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                padding=padding,
                dilation=dilation,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
