"""The one tiny backbone of the tests, a stand-in for the ResNet at a fraction
of its cost, and a one-layer head for it.

- The training-parity tests give the same :class:`TinyBackbone` to the
  reference networks (tests/reference/) and to this project's model
  (``backbone.stem``/``layer3``/``layer4`` are ResNet's key names, so the
  converters pass its weights through).
- The ablation tests run every head on it (tests/models/test_config_parts.py).
- ``model=tiny_gn`` (tests/configs/model/tiny_gn.yaml): ``norm="group"`` and
  :class:`TinyHead`, no dropout, nothing coupling the samples of a batch, so
  that 2 processes × batch b reproduce 1 process × batch 2b exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class TinyBackbone(nn.Module):
    """Output stride 8, as the recipes' dilated ResNets: (B, 3, H, W) ->
    [stem, stem, res4, res5] with 8, 8, ``low``, ``high`` channels at 1/2,
    1/2, 1/8, 1/8 of the input; the heads read res4 and res5.
    ``norm``: "batch" (BatchNorm, as the ResNet) or "group" (GroupNorm)."""

    def __init__(self, low: int = 16, high: int = 32, norm: str = "batch") -> None:
        super().__init__()
        if norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")

        def conv_norm_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list:
            conv = nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False)
            bn = nn.BatchNorm2d(cout) if norm == "batch" else nn.GroupNorm(4, cout)
            return [conv, bn, nn.ReLU()]

        self.stem = nn.Sequential(*conv_norm_relu(3, 8, stride=2))
        self.layer3 = nn.Sequential(
            *conv_norm_relu(8, low, stride=2), *conv_norm_relu(low, low, stride=2)
        )
        self.layer4 = nn.Sequential(*conv_norm_relu(low, high, dilation=2))

    def forward(self, x: Tensor) -> list[Tensor]:
        stem = self.stem(x)
        res4 = self.layer3(stem)
        return [stem, stem, res4, self.layer4(res4)]


class TinyHead(nn.Module):
    """features[-1] (B, in_channels, h, w) -> logits (B, K, h, w)."""

    def __init__(self, num_classes: int, in_channels: int = 32) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return self.classifier(features[-1])
