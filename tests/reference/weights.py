"""Random weights for comparing two implementations of one network."""

from __future__ import annotations

import math

import torch
from torch import nn


def randomise(module: nn.Module, seed: int = 0, conv_bias_before_bn: bool = True) -> nn.Module:
    """float32-representable random weights and BN statistics (so a float32
    model loads them exactly), activations O(1) through 100 layers, non-zero
    Wo. ``conv_bias_before_bn=False`` zeroes the biases of convs followed by
    BN (the authors' head): see :func:`test_official_trains_as_the_authors`."""
    gen = torch.Generator().manual_seed(seed)
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            m.weight.data = torch.randn(m.weight.shape, generator=gen) / math.sqrt(fan_in)
            if m.bias is not None:
                m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.1
        elif isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=gen) * 0.5 + 0.5
            m.bias.data = torch.rand(n, generator=gen) * 0.2 - 0.1
            m.running_mean = torch.rand(n, generator=gen) * 0.2 - 0.1
            m.running_var = torch.rand(n, generator=gen) + 0.5
            m.num_batches_tracked.fill_(1000)
    if not conv_bias_before_bn:
        for seq in (m for m in module.modules() if isinstance(m, nn.Sequential)):
            for a, b in zip(seq, list(seq)[1:], strict=False):
                bn = b[0] if isinstance(b, nn.Sequential) else b
                if a in convs and a.bias is not None and isinstance(bn, nn.BatchNorm2d):
                    a.bias.data.zero_()
    return module
