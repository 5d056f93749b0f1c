"""The authors' ANN (MendelXu/ANN: models/seg/nets/annn.py,
models/seg/utils/{apnb,afnb}.py, the deep-base ResNet with
DilatedResnetBackbone, and the sliding-crop prediction of
methods/seg/fcn_segmentor_test.py), rewritten from their structure with
plain torch modules; their BNReLU is Sequential(BN, ReLU) and BN for their
synchronised BN (they agree in eval). :func:`aux_ohem_ce_loss` is their
training loss (models/seg/loss/seg_modules.py, FSAuxOhemCELoss)."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())


class Bottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def _nostride_dilate(m: nn.Module, dilate: int) -> None:
    if isinstance(m, nn.Conv2d):
        if m.stride == (2, 2):
            m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                m.dilation, m.padding = (dilate // 2,) * 2, (dilate // 2,) * 2
        elif m.kernel_size == (3, 3):
            m.dilation, m.padding = (dilate,) * 2, (dilate,) * 2


class DilatedDeepBaseResNet(nn.Module):
    """ResNet(deep_base=True) + DilatedResnetBackbone(dilate_scale=8, multi_grid=[1, 1, 1])."""

    def __init__(self, depth: int = 101) -> None:
        super().__init__()
        self.inplanes = 128
        self.prefix = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)),
                    ("bn1", nn.BatchNorm2d(64)),
                    ("relu1", nn.ReLU()),
                    ("conv2", nn.Conv2d(64, 64, 3, stride=1, padding=1, bias=False)),
                    ("bn2", nn.BatchNorm2d(64)),
                    ("relu2", nn.ReLU()),
                    ("conv3", nn.Conv2d(64, 128, 3, stride=1, padding=1, bias=False)),
                    ("bn3", nn.BatchNorm2d(128)),
                    ("relu3", nn.ReLU()),
                ]
            )
        )
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        layers = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.layer3.apply(lambda m: _nostride_dilate(m, 2))
        for i in range(3):  # multi_grid [1, 1, 1]
            self.layer4[i].apply(lambda m: _nostride_dilate(m, 4))

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.prefix(x))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


class PSPModule(nn.Module):
    def __init__(self, sizes: tuple[int, ...] = (1, 3, 6, 8)) -> None:
        super().__init__()
        self.stages = nn.ModuleList([nn.AdaptiveAvgPool2d((s, s)) for s in sizes])

    def forward(self, feats: Tensor) -> Tensor:
        n, c = feats.shape[:2]
        return torch.cat([stage(feats).view(n, c, -1) for stage in self.stages], -1)


class _Attention(nn.Module):
    """Both _SelfAttentionBlock classes (afnb.py: separate f_query on the
    high-level map; apnb.py: f_query is f_key)."""

    def __init__(self, low: int, high: int, key: int, value: int, out: int, share: bool) -> None:
        super().__init__()
        self.key_channels, self.value_channels = key, value
        self.f_key = nn.Sequential(nn.Conv2d(low, key, 1), bn_relu(key))
        self.f_query = self.f_key if share else nn.Sequential(nn.Conv2d(high, key, 1), bn_relu(key))
        self.f_value = nn.Conv2d(low, value, 1)
        self.W = nn.Conv2d(value, out, 1)
        self.psp = PSPModule()

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        b = high.size(0)
        value = self.psp(self.f_value(low)).permute(0, 2, 1)
        query = self.f_query(high).view(b, self.key_channels, -1).permute(0, 2, 1)
        key = self.psp(self.f_key(low))
        sim = F.softmax((self.key_channels**-0.5) * torch.matmul(query, key), dim=-1)
        context = torch.matmul(sim, value).permute(0, 2, 1).contiguous()
        return self.W(context.view(b, self.value_channels, *high.size()[2:]))


class AFNB(nn.Module):
    def __init__(self, low: int = 1024, high: int = 2048, key: int = 256, value: int = 256) -> None:
        super().__init__()
        self.stages = nn.ModuleList([_Attention(low, high, key, value, high, share=False)])
        self.conv_bn_dropout = nn.Sequential(
            nn.Conv2d(2 * high, high, 1), nn.BatchNorm2d(high), nn.Dropout2d(0.05)
        )

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        context = self.stages[0](low, high)
        return self.conv_bn_dropout(torch.cat([context, high], 1))


class APNB(nn.Module):
    def __init__(self, channels: int = 512, key: int = 256, value: int = 256) -> None:
        super().__init__()
        self.stages = nn.ModuleList([_Attention(channels, channels, key, value, channels, True)])
        self.conv_bn_dropout = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 1), bn_relu(channels), nn.Dropout2d(0.05)
        )

    def forward(self, feats: Tensor) -> Tensor:
        context = self.stages[0](feats, feats)
        return self.conv_bn_dropout(torch.cat([context, feats], 1))


class AsymmetricNonLocalNetwork(nn.Module):
    """annn.py: forward returns (aux, logits), both upsampled with align_corners=True."""

    def __init__(
        self,
        num_classes: int = 19,
        depth: int = 101,
        backbone: nn.Module | None = None,
        widths: dict[str, int] | None = None,
    ) -> None:
        """``backbone`` replaces their ResNet; ``widths`` (low, high, channels,
        key, value, aux) their 1024, 2048, 512, 256, 256, 512."""
        super().__init__()
        w = {"low": 1024, "high": 2048, "channels": 512, "key": 256, "value": 256, "aux": 512}
        w.update(widths or {})
        c = w["channels"]
        self.backbone = DilatedDeepBaseResNet(depth) if backbone is None else backbone
        self.fusion = AFNB(w["low"], w["high"], w["key"], w["value"])
        self.context = nn.Sequential(
            nn.Conv2d(w["high"], c, 3, padding=1), bn_relu(c), APNB(c, w["key"], w["value"])
        )
        self.cls = nn.Conv2d(c, num_classes, 1)
        self.dsn = nn.Sequential(
            nn.Conv2d(w["low"], w["aux"], 3, padding=1),
            bn_relu(w["aux"]),
            nn.Dropout2d(0.05),
            nn.Conv2d(w["aux"], num_classes, 1),
        )

    def forward(self, x_: Tensor) -> tuple[Tensor, Tensor]:
        x = self.backbone(x_)
        aux = self.dsn(x[-2])
        x = self.cls(self.context(self.fusion(x[-2], x[-1])))
        size = (x_.size(2), x_.size(3))
        aux = F.interpolate(aux, size=size, mode="bilinear", align_corners=True)
        return aux, F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def ohem_ce_loss(
    predict: Tensor,
    target: Tensor,
    thresh: float,
    min_kept: int,
    class_weight: Tensor | None = None,
    ignore_index: int = 255,
) -> Tensor:
    """FSOhemCELoss: valid pixels sorted by true-class probability; kept when
    strictly below max(sorted[min(min_kept, n - 1)], thresh); their weighted
    losses averaged by count (summed, i.e. 0, when none is kept)."""
    min_kept = max(1, min_kept)
    prob = F.softmax(predict, dim=1)
    tmp_target = target.clone()
    tmp_target[tmp_target == ignore_index] = 0
    prob = prob.gather(1, tmp_target.unsqueeze(1))
    mask = target.contiguous().view(-1) != ignore_index
    sort_prob, sort_indices = prob.contiguous().view(-1)[mask].contiguous().sort()
    min_threshold = sort_prob[min(min_kept, sort_prob.numel() - 1)] if sort_prob.numel() else 0.0
    threshold = max(min_threshold, thresh)
    loss = F.cross_entropy(
        predict, target, weight=class_weight, ignore_index=ignore_index, reduction="none"
    )
    selected = loss.contiguous().view(-1)[mask][sort_indices][sort_prob < threshold]
    return selected.sum() if selected.numel() == 0 else selected.mean()


def aux_ohem_ce_loss(
    outputs: tuple[Tensor, Tensor],
    target: Tensor,
    thresh: float = 0.7,
    min_kept: int = 100000,
    class_weight: Tensor | None = None,
    ignore_index: int = 255,
) -> Tensor:
    """FSAuxOhemCELoss on the network's (aux, seg) outputs: 1.0 × OHEM on seg +
    0.4 × nn.CrossEntropyLoss (class-weighted mean) on aux; their nearest
    resize of the target to the aux size is the identity here."""
    aux_out, seg_out = outputs
    seg_loss = ohem_ce_loss(seg_out, target, thresh, min_kept, class_weight, ignore_index)
    aux_loss = F.cross_entropy(aux_out, target, weight=class_weight, ignore_index=ignore_index)
    return 1.0 * seg_loss + 0.4 * aux_loss


def _starts(total: int, crop: int, stride_ratio: float) -> list[int]:
    """_decide_intersection of fcn_segmentor_test.py."""
    stride = int(crop * stride_ratio)
    starts = [stride * i for i in range((total - crop) // stride + 1)]
    if total - starts[-1] > crop:
        starts.append(total - crop)
    return starts


@torch.no_grad()
def crop_predict(net: AsymmetricNonLocalNetwork, img: Tensor, crop: int, ratio: float) -> Tensor:
    """Their _crop_predict at scale 1: main logits of square crops, summed and
    divided by the count map. (B, 3, H, W) -> (B, K, H, W)."""
    _, _, h, w = img.shape
    total, count = None, img.new_zeros(1, 1, h, w)
    for top in _starts(h, crop, ratio):
        for left in _starts(w, crop, ratio):
            out = net(img[:, :, top : top + crop, left : left + crop])[-1]
            if total is None:
                total = out.new_zeros(out.shape[0], out.shape[1], h, w)
            total[:, :, top : top + crop, left : left + crop] += out
            count[:, :, top : top + crop, left : left + crop] += 1
    return total / count
