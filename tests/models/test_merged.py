"""The fusion fuse composed into the bottleneck (ann/models/heads/merged.py):
the same function in fp64 (border taps included), applied to eval copies of
mergeable heads only, the trained module untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from reference.weights import randomise

from ann import Segmenter
from ann.models.heads.merged import FusionBottleneck, merge_fusion_bottleneck


def _demo(*overrides: str) -> torch.nn.Module:
    model = Segmenter.from_config("demo", overrides=list(overrides), device="cpu").model
    return randomise(model, seed=5).double().eval()


@pytest.mark.parametrize("size", [(64, 64), (61, 83), (33, 47)])
def test_merged_head_is_the_same_function_in_fp64(size: tuple[int, int]) -> None:
    model = _demo()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = copy.deepcopy(model)
    assert merge_fusion_bottleneck(net) == 1
    head = net.decode_head
    assert isinstance(head.fusion, FusionBottleneck) and isinstance(
        head.bottleneck, torch.nn.Identity
    )
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        ref, out = model(x), net(x)
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-12
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_only_eval_heads_with_a_linear_fuse_merge() -> None:
    assert merge_fusion_bottleneck(_demo("+model.decode_head.fusion=none")) == 0
    assert merge_fusion_bottleneck(_demo().train()) == 0
    # Wo(O) + res5: no fuse to compose (it needs the fusion's width to be res5's)
    residual = _demo("+model.decode_head.output=residual", "model.decode_head.fusion_channels=null")
    assert residual.decode_head.fusion.output == "residual"
    assert merge_fusion_bottleneck(residual) == 0
