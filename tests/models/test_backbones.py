"""Backbone options: output stride, stems, pretrained weights, freezing."""

from __future__ import annotations

import logging
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import ann.models.backbones as backbones
from ann.errors import ConfigError
from ann.models.backbones import ResNetBackbone
from helpers import compose_cfg


@pytest.mark.parametrize(
    ("stride", "stem", "size"), [(8, "deep", 8), (16, "standard", 4), (16, "deep", 4)]
)
def test_output_stride_and_stem(stride: int, stem: str, size: int) -> None:
    net = ResNetBackbone(18, output_stride=stride, stem=stem).eval()
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [16, 8, size, size]
    if stem == "deep":
        assert [m.kernel_size for m in net.stem if isinstance(m, nn.Conv2d)] == [(3, 3)] * 3
    else:
        assert net.stem[0].kernel_size == (7, 7)


def test_contract_dilation_rates() -> None:
    net = ResNetBackbone(50, output_stride=8)
    assert net.layer3[0].conv2.dilation == (1, 1) and net.layer3[1].conv2.dilation == (2, 2)
    assert net.layer4[0].conv2.dilation == (2, 2) and net.layer4[2].conv2.dilation == (4, 4)
    assert net.layer4[0].downsample[0].stride == (1, 1)


def test_torchvision_offline_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError) as info:
        ResNetBackbone(18, stem="standard", pretrained="torchvision")
    msg = str(info.value)
    assert "\n" not in msg and "model.backbone.pretrained=/path/to/file.pth" in msg
    assert "https://download.pytorch.org/models/resnet18" in msg


def test_torchvision_style_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    tv = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    net = ResNetBackbone(18, stem="standard", pretrained=str(path))
    torch.testing.assert_close(net.stem[0].weight, tv.conv1.weight)
    torch.testing.assert_close(net.stem[1].running_var, tv.bn1.running_var)
    torch.testing.assert_close(net.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)
    # Into the deep stem: the 7×7 conv cannot fit; it is skipped and reported.
    with caplog.at_level(logging.WARNING, logger=backbones.__name__):
        deep = ResNetBackbone(18, stem="deep", pretrained=str(path))
    torch.testing.assert_close(
        deep.layer2[0].downsample[0].weight, tv.layer2[0].downsample[0].weight
    )
    assert "skipped key(s): ['stem.0.weight'" in caplog.text
    assert "missing key(s)" in caplog.text


def test_mmseg_v1c_style_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An mmsegmentation ResNetV1c checkpoint (stem.0/1/3/4/6/7, layerN.i.convK,
    downsample.0/1) under state_dict with backbone. prefixes and head keys."""
    torch.manual_seed(0)
    src = ResNetBackbone(18, stem="deep")
    state = {f"backbone.{k}": v for k, v in src.state_dict().items()}
    assert {"backbone.stem.7.weight", "backbone.layer2.0.downsample.1.bias"} <= set(state)
    state["decode_head.conv_seg.weight"] = torch.zeros(19, 512, 1, 1)
    del state["backbone.layer4.1.bn2.running_mean"]
    path = tmp_path / "v1c.pth"
    torch.save({"meta": {}, "state_dict": state}, path)
    with caplog.at_level(logging.WARNING, logger=backbones.__name__):
        net = ResNetBackbone(18, stem="deep", pretrained=str(path))
    for k, v in src.state_dict().items():
        if k != "layer4.1.bn2.running_mean":
            torch.testing.assert_close(net.state_dict()[k], v, msg=k)
    assert "1 missing key(s): ['layer4.1.bn2.running_mean']" in caplog.text


def test_bad_pretrained_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no file at"):
        ResNetBackbone(18, pretrained=str(tmp_path / "nope.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable weights file"):
        ResNetBackbone(18, pretrained=str(junk))
    other = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, other)
    with pytest.raises(ConfigError, match="no tensor fits"):
        ResNetBackbone(18, pretrained=str(other))


def test_frozen_stages_and_norm_eval() -> None:
    net = ResNetBackbone(18, stem="deep", frozen_stages=1, norm_eval=False).train()
    assert not any(p.requires_grad for p in net.stem.parameters())
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert not net.stem[1].training and not net.layer1[0].bn1.training
    assert net.layer2[0].bn1.training
    before = net.layer1[0].bn1.running_mean.clone()
    net(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(net.layer1[0].bn1.running_mean, before)

    net = ResNetBackbone(18, norm_eval=True).train()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert net.layer1[0].conv1.training and all(p.requires_grad for p in net.parameters())


def test_bad_pretrained_through_tool_is_one_line(capsys: pytest.CaptureFixture) -> None:
    """A constructor's ConfigError reaches the user as one line, exit 2,
    although hydra's instantiate wraps it."""
    from hydra.utils import instantiate

    from ann.cli import friendly_errors

    cfg = compose_cfg(["model=ann_r18", "model.backbone.pretrained=/no/such/weights.pth"])
    with pytest.raises(SystemExit) as info:
        friendly_errors(lambda c: instantiate(c.model))(cfg)
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: model.backbone.pretrained: no file at /no/such/weights.pth "
        "(expected v1c, torchvision, a .pth file or null)"
    ]


def test_authors_deep_base_imagenet_file(tmp_path: Path) -> None:
    """The authors' ImageNet file (conv1/bn1/conv2/bn2/conv3/bn3 of a 64/64/128
    deep stem, optionally under prefix.) fills the stem_channels=128 backbone."""
    torch.manual_seed(0)
    src = ResNetBackbone(50, stem_channels=128, maxpool_ceil=True)
    names = {
        "stem.0": "conv1",
        "stem.1": "bn1",
        "stem.3": "conv2",
        "stem.4": "bn2",
        "stem.6": "conv3",
        "stem.7": "bn3",
    }
    state = {}
    for k, v in src.state_dict().items():
        head = k[: k.index(".", 5)] if k.startswith("stem.") else None
        state[f"prefix.{names[head]}{k[len(head) :]}" if head else k] = v.clone()
    state["fc.weight"] = torch.zeros(1000, 2048)
    path = tmp_path / "3x3resnet50-imagenet.pth"
    torch.save(state, path)
    net = ResNetBackbone(50, stem_channels=128, maxpool_ceil=True, pretrained=str(path))
    for k, v in src.state_dict().items():
        torch.testing.assert_close(net.state_dict()[k], v, msg=k)
    assert net.layer1[0].conv1.in_channels == 128 and net.maxpool.ceil_mode


@pytest.mark.parametrize(("depth", "stem"), [(18, "standard"), (50, "deep")])
def test_base_channels_narrows_every_stage(depth: int, stem: str) -> None:
    """base_channels=32 is the same network with every stage half as wide: the
    same keys, each layer tensor's channel counts halved (the stem's kept), a
    quarter of the stages' FLOPs, and torchvision's initialisation. ResNet-18's
    layer1 then needs a 1×1 shortcut from the 64-wide stem, as mmsegmentation's
    ResNet(base_channels=32) builds it."""
    torch.manual_seed(0)
    wide = ResNetBackbone(depth, stem=stem)
    narrow = ResNetBackbone(depth, stem=stem, base_channels=32)
    assert narrow.out_channels == [c // 2 for c in wide.out_channels]
    wide_state, narrow_state = wide.state_dict(), narrow.state_dict()
    shortcut = {k for k in narrow_state if k not in wide_state}
    assert {k.startswith("layer1.0.downsample.") for k in shortcut} == (
        {True} if depth == 18 else set()
    )
    assert [k for k in narrow_state if k not in shortcut] == list(wide_state)
    for key, tensor in narrow_state.items():
        if key in shortcut:
            continue
        full = wide_state[key].shape
        if key.startswith("stem") or tensor.dim() == 0:
            assert tensor.shape == full, key
        elif tensor.dim() == 4:
            reads_stem = key in ("layer1.0.conv1.weight", "layer1.0.downsample.0.weight")
            expected = (full[0] // 2, full[1] if reads_stem else full[1] // 2, *full[2:])
            assert tensor.shape == expected, key
        else:
            assert tensor.shape == (full[0] // 2,), key
    conv = narrow.layer3[1].conv2.weight
    fan_out = conv.shape[0] * conv.shape[2] * conv.shape[3]
    assert abs(conv.std().item() / (2 / fan_out) ** 0.5 - 1) < 0.05
    assert torch.equal(narrow.layer3[1].bn2.weight, torch.ones(narrow.layer3[1].bn2.num_features))

    def stage_flops(net: ResNetBackbone) -> int:
        stem_out = net.maxpool(net.stem(torch.randn(1, 3, 64, 64)))
        with FlopCounterMode(display=False) as counter:
            x = stem_out
            for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
                x = layer(x)
        return counter.get_total_flops()

    with torch.no_grad():
        ratio = stage_flops(narrow) / stage_flops(wide)
        feats = narrow.eval()(torch.randn(2, 3, 64, 64))
    assert 0.25 <= ratio < 0.27
    assert [tuple(f.shape[1:]) for f in feats] == [
        (c, s, s) for c, s in zip(narrow.out_channels, (16, 8, 8, 8), strict=True)
    ]


def test_base_channels_refuses_imagenet_weights() -> None:
    with pytest.raises(ConfigError, match="base_channels=32 fits no ImageNet weights"):
        ResNetBackbone(18, stem="standard", base_channels=32, pretrained="torchvision")
