"""Dilated ResNet backbones on torchvision's ResNet."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from ann.errors import CheckpointError, ConfigError
from ann.models import pretrained as published
from ann.safe_load import load_tensors

log = logging.getLogger(__name__)

_DEPTHS = {18: "resnet18", 34: "resnet34", 50: "resnet50", 101: "resnet101", 152: "resnet152"}
_WEIGHTS = {
    18: "ResNet18_Weights",
    34: "ResNet34_Weights",
    50: "ResNet50_Weights",
    101: "ResNet101_Weights",
    152: "ResNet152_Weights",
}


def _narrow_stages(net: torchvision.models.ResNet, inplanes: int, base_channels: int) -> None:
    """Rebuilds the four stages of ``net`` with widths base_channels × 1, 2, 4, 8.

    Same blocks and depths, the same key names (plus a ``layer1.0.downsample``
    shortcut where the stem is wider than a basic-block layer1) and the same
    initialisation as torchvision's constructor (Kaiming normal, fan-out; BN
    weight 1, bias 0).
    """
    block = type(net.layer1[0])
    for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
        planes, stride = base_channels << i, 1 if i == 0 else 2
        out = planes * block.expansion
        down = None
        if stride != 1 or inplanes != out:
            down = nn.Sequential(
                nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )
        blocks = [block(inplanes, planes, stride, down)]
        blocks += [block(out, planes) for _ in range(len(getattr(net, name)) - 1)]
        stage = nn.Sequential(*blocks)
        for m in stage.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        setattr(net, name, stage)
        inplanes = out


def _dilate_layer(layer: nn.Sequential, dilation: int) -> None:
    """Removes the layer's stride and dilates its 3×3 convs in place.

    As in the reference ("contract_dilation"), the first block keeps the
    previous stage's rate (dilation // 2) and the rest use ``dilation``.
    """
    for i, block in enumerate(layer):
        rate = max(dilation // 2, 1) if i == 0 else dilation
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                if m.stride == (2, 2):
                    m.stride = (1, 1)
                if m.kernel_size == (3, 3):
                    m.dilation = (rate, rate)
                    m.padding = (rate, rate)


def stage_channels(depth: int, base_channels: int = 64) -> list[int]:
    """The output channels of res2..res5: base_channels × 1, 2, 4, 8, times 4
    for a bottleneck ResNet (depth ≥ 50)."""
    expansion = 4 if depth >= 50 else 1
    return [(base_channels << i) * expansion for i in range(4)]


def _deep_stem(net: torchvision.models.ResNet, stem_channels: int) -> nn.Sequential:
    """The V1c stem: three 3×3 conv+BN+ReLU (stem_channels/2, /2, stem_channels
    wide), the first with stride 2. A stem wider than 64 also widens the 1×1
    conv and shortcut of ``net``'s first bottleneck, which read it."""
    half = stem_channels // 2
    stem = nn.Sequential(
        nn.Conv2d(3, half, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(half),
        nn.ReLU(inplace=True),
        nn.Conv2d(half, half, 3, padding=1, bias=False),
        nn.BatchNorm2d(half),
        nn.ReLU(inplace=True),
        nn.Conv2d(half, stem_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(stem_channels),
        nn.ReLU(inplace=True),
    )
    if stem_channels != 64:
        first = net.layer1[0]
        first.conv1 = nn.Conv2d(stem_channels, first.conv1.out_channels, 1, bias=False)
        out = first.downsample[0].out_channels
        first.downsample[0] = nn.Conv2d(stem_channels, out, 1, bias=False)
    return stem


def _check_args(
    depth: int,
    output_stride: int,
    stem: str,
    stem_channels: int,
    base_channels: int,
    pretrained: str | None,
) -> None:
    """Refuses a combination of ResNetBackbone arguments it cannot build."""
    if depth not in _DEPTHS:
        raise ConfigError(f"model.backbone.depth must be one of {sorted(_DEPTHS)}, got {depth}")
    if output_stride not in (8, 16, 32):
        raise ConfigError(f"model.backbone.output_stride must be 8, 16 or 32, got {output_stride}")
    if stem not in ("deep", "standard"):
        raise ConfigError(f"model.backbone.stem must be 'deep' or 'standard', got {stem!r}")
    if stem_channels != 64 and (stem != "deep" or depth < 50):
        raise ConfigError(
            "model.backbone.stem_channels other than 64 needs stem=deep and depth >= 50, "
            f"got stem_channels={stem_channels}, stem={stem!r}, depth={depth}"
        )
    if base_channels != 64 and pretrained:
        raise ConfigError(
            f"model.backbone.base_channels={base_channels} fits no ImageNet weights (they "
            "are 64 wide): set model.backbone.pretrained=null or base_channels=64"
        )


class ResNetBackbone(nn.Module):
    """ResNet with output stride 8 or 16, returning the four stage outputs.

    Args:
        depth: 18, 34, 50, 101 or 152.
        output_stride: 8 (layer3 dilation 2, layer4 dilation 4) or 16.
        stem: ``"standard"`` (torchvision's 7×7 conv) or ``"deep"`` (three 3×3
            convs, the "V1c" layout of the reference code).
        stem_channels: output width of the deep stem, whose convs are
            stem_channels/2, stem_channels/2, stem_channels wide: 64 for V1c
            and mmsegmentation, 128 for the authors' release (depth ≥ 50).
        maxpool_ceil: round the stem max-pool's output size up (the authors'
            release) instead of down.
        base_channels: width of layer1, doubled at each later stage (64 in
            every published model; mmsegmentation's ``base_channels``).
            Narrower stages cost about (base_channels / 64)² of the FLOPs and
            cannot take ImageNet weights: the CPU demo uses 24.
        pretrained: None (from scratch), ``"v1c"`` (the published V1c ImageNet
            weights for this depth, fetched into torch's hub cache),
            ``"torchvision"`` (torchvision's ImageNet weights) or a file path.
        norm_eval: keep BatchNorm layers in eval mode during training.
        frozen_stages: freeze the stem and the first ``frozen_stages`` layers.
        out_channels: the channels of res2..res5 as the config states them
            for the heads to read; checked against depth and base_channels
            (None: not checked).

    forward: (B, 3, H, W) -> [res2 (B, C, H/4, W/4), res3 (H/8), res4, res5],
    res4/res5 at H/8 for output stride 8.
    """

    def __init__(
        self,
        depth: int = 50,
        output_stride: int = 8,
        stem: str = "deep",
        pretrained: str | None = None,
        norm_eval: bool = False,
        frozen_stages: int = -1,
        stem_channels: int = 64,
        maxpool_ceil: bool = False,
        base_channels: int = 64,
        out_channels: list[int] | None = None,
    ) -> None:
        super().__init__()
        _check_args(depth, output_stride, stem, stem_channels, base_channels, pretrained)
        expected = stage_channels(depth, base_channels)
        if out_channels is not None and list(out_channels) != expected:
            # The heads read these from the config (${model.backbone.out_channels}):
            # a stale list would build heads of the wrong width.
            raise ConfigError(
                f"model.backbone.out_channels must be {expected} for depth {depth} "
                f"and base_channels {base_channels}, got {list(out_channels)}"
            )
        net = getattr(torchvision.models, _DEPTHS[depth])(weights=None)
        self.depth = depth
        self.stem_type = stem
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        if stem == "deep":
            self.stem = _deep_stem(net, stem_channels)
        else:
            self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        if base_channels != 64:
            _narrow_stages(net, stem_channels, base_channels)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=maxpool_ceil)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        if output_stride <= 16:
            _dilate_layer(self.layer4, 2 if output_stride == 16 else 4)
        if output_stride == 8:
            _dilate_layer(self.layer3, 2)
        self.out_channels = stage_channels(depth, base_channels)
        if pretrained:
            self.load_pretrained(pretrained)
        self._freeze()

    def load_pretrained(self, pretrained: str) -> None:
        """Loads ImageNet weights: ``"v1c"`` (mmsegmentation's V1c file for
        this depth, from torch's hub cache, downloaded there once),
        ``"torchvision"`` (torchvision's weights API) or a local file with torchvision-style or mmsegmentation/V1c-style keys
        (optionally under ``state_dict``/``model`` and prefixed ``backbone.``
        or ``module.``). Keys are mapped to this module's names; tensors whose
        shape does not fit (e.g. a 7×7 stem into the deep stem) are skipped;
        missing, unexpected and skipped keys are logged."""
        if pretrained == "torchvision":
            state, source = self._torchvision_state()
        else:
            state, source = self._file_state(pretrained)
        mapped = map_backbone_keys(state)
        own = self.state_dict()
        fits = {k: v for k, v in mapped.items() if k in own and own[k].shape == v.shape}
        skipped = sorted(k for k in mapped if k in own and k not in fits)
        unexpected = sorted(k for k in mapped if k not in own)
        missing = sorted(k for k in own if k not in fits)
        if not fits:
            raise ConfigError(
                f"model.backbone.pretrained={pretrained}: no tensor fits a ResNet-{self.depth} "
                f"(e.g. key {next(iter(state), None)!r}); expected torchvision or mmseg keys"
            )
        self.load_state_dict(fits, strict=False)
        log.info("ImageNet weights from %s: %d tensors loaded", source, len(fits))
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("skipped", skipped)):
            if keys:
                log.warning("backbone weights: %d %s key(s): %s", len(keys), what, keys[:10])

    def _torchvision_state(self) -> tuple[dict[str, Tensor], str]:
        """torchvision's ImageNet state dict for this depth, and where it came from."""
        weights = getattr(torchvision.models, _WEIGHTS[self.depth]).IMAGENET1K_V1
        if self.stem_type == "deep":
            log.warning(
                "model.backbone.pretrained=torchvision has a 7×7 stem: with stem=deep the "
                "stem stays randomly initialised (use stem=standard, or a V1c file)"
            )
        try:
            state = weights.get_state_dict(progress=False)
        except Exception as exc:  # offline hosts raise many kinds
            raise ConfigError(
                f"model.backbone.pretrained=torchvision: could not download {weights.url} "
                f"({exc.__class__.__name__}); offline, copy that file here and pass "
                "model.backbone.pretrained=/path/to/file.pth (or put it in "
                "$TORCH_HOME/hub/checkpoints/)"
            ) from None
        source = f"torchvision ({weights.url})"
        return state, source

    def _file_state(self, pretrained: str) -> tuple[dict[str, Tensor], str]:
        """The state dict of a V1c short name (fetched once) or a file path,
        and where it came from."""
        if published.is_short_name(pretrained):
            if self.stem_type != "deep":
                raise ConfigError(
                    "model.backbone.pretrained=v1c holds a deep stem: set "
                    "model.backbone.stem=deep (or pretrained=torchvision for stem=standard)"
                )
            path = published.fetch(published.v1c_url(self.depth, pretrained))
        else:
            path = Path(pretrained)
        source = f"{pretrained} ({path})" if published.is_short_name(pretrained) else str(path)
        if not path.is_file():
            raise ConfigError(
                f"model.backbone.pretrained: no file at {path} "
                "(expected v1c, torchvision, a .pth file or null)"
            )
        try:
            state = load_tensors(path, "model.backbone.pretrained")
        except CheckpointError as exc:  # a weights file named in the config
            raise ConfigError(str(exc)) from None
        if isinstance(state, dict):
            state = state.get("state_dict", state.get("model", state))
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise ConfigError(f"model.backbone.pretrained: {path} holds no state dict")
        return state, source

    def _freeze(self) -> None:
        stages = [nn.ModuleList([self.stem]), self.layer1, self.layer2, self.layer3, self.layer4]
        for stage in stages[: self.frozen_stages + 1]:
            stage.eval()
            for p in stage.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> ResNetBackbone:
        super().train(mode)
        self._freeze() if mode and self.frozen_stages >= 0 else None
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.stem(x))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


def map_backbone_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Renames pretrained ResNet keys to this module's names.

    torchvision: ``conv1``/``bn1`` -> ``stem.0``/``stem.1``, ``fc.*`` dropped.
    mmsegmentation ResNetV1c: ``stem.0/1/3/4/6/7`` and ``layerN.i.{conv,bn}k``,
    ``layerN.0.downsample.0/1`` already match ours. The authors' deep-base
    ImageNet file: ``[prefix.]{conv,bn}{1,2,3}`` -> ``stem.0/1/3/4/6/7``. A
    whole segmentor checkpoint keeps only its ``backbone.*`` entries;
    ``module.`` is stripped.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    state = {k.removeprefix("prefix."): v for k, v in state.items()}
    stem = {"conv1": "stem.0", "bn1": "stem.1"}
    if "conv2.weight" in state:  # a deep stem saved without a container
        stem.update({"conv2": "stem.3", "bn2": "stem.4", "conv3": "stem.6", "bn3": "stem.7"})
    out = {}
    for k, v in state.items():
        if k.startswith("fc."):
            continue
        head, _, rest = k.partition(".")
        out[f"{stem[head]}.{rest}" if head in stem else k] = v
    return out
