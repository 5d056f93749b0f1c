"""mmsegmentation's ANN (v0.x/1.x: mmseg/models/decode_heads/ann_head.py,
mmseg/models/utils/self_attention_block.py, FCNHead, ResNetV1c, and
EncoderDecoder's encode_decode / slide_inference), rewritten from their
structure with plain torch modules; BN for SyncBN (they agree in eval).

tests/reference/test_convert.py checks the converter against this; the note of the
issue that added it records a one-off check of the converter against
mmsegmentation 1.2.2 itself (max relative logit error 4e-14 in float64).
tests/reference/test_training_parity.py trains against :meth:`EncoderDecoder.loss`
(mmseg/models/losses/cross_entropy_loss.py, decode_head.loss_by_feat) and
:class:`PolyLR` (mmengine's PolyLR, chained form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvModule(nn.Module):
    """mmcv's ConvModule with BN: ``conv`` (no bias), ``bn``, optional ReLU."""

    def __init__(self, cin: int, cout: int, k: int, padding: int = 0, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.act else x


class Bottleneck(nn.Module):
    """ResNet bottleneck, style 'pytorch' (stride on the 3×3)."""

    def __init__(self, cin: int, planes: int, stride: int, dilation: int, down: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
            if down
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNetV1c(nn.Module):
    """Deep stem 32/32/64, strides (1, 2, 1, 1), dilations (1, 1, 2, 4),
    contract_dilation (a dilated stage's first block uses half the rate)."""

    def __init__(self, depth: int = 50) -> None:
        super().__init__()
        blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, 1, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (n, planes, stride, dil) in enumerate(
            zip(blocks, (64, 128, 256, 512), (1, 2, 1, 1), (1, 1, 2, 4), strict=True)
        ):
            first = dil // 2 if dil > 1 else dil
            layer = [Bottleneck(cin, planes, stride, first, True)]
            layer += [Bottleneck(planes * 4, planes, 1, dil, False) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            cin = planes * 4

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.stem(x))
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            outs.append(x)
        return outs


class PPMConcat(nn.ModuleList):
    def __init__(self, scales: tuple[int, ...] = (1, 3, 6, 8)) -> None:
        super().__init__([nn.AdaptiveAvgPool2d(s) for s in scales])

    def forward(self, feats: Tensor) -> Tensor:
        return torch.cat([p(feats).view(*feats.shape[:2], -1) for p in self], dim=2)


class SelfAttentionBlock(nn.Module):
    """_SelfAttentionBlock as ANN configures it: 1-conv key/query ConvModules,
    plain 1×1 value and out convs, PPMConcat key/value downsampling,
    similarity × channels^-0.5, softmax over anchors."""

    def __init__(self, key_in: int, query_in: int, channels: int, out: int, share: bool) -> None:
        super().__init__()
        self.channels = channels
        self.key_project = ConvModule(key_in, channels, 1)
        self.query_project = self.key_project if share else ConvModule(query_in, channels, 1)
        self.value_project = nn.Conv2d(key_in, channels, 1)
        self.out_project = nn.Conv2d(channels, out, 1)
        self.key_downsample = PPMConcat()

    def forward(self, query_feats: Tensor, key_feats: Tensor) -> Tensor:
        b = query_feats.size(0)
        query = self.query_project(query_feats)
        query = query.reshape(*query.shape[:2], -1).permute(0, 2, 1).contiguous()
        key = self.key_downsample(self.key_project(key_feats))
        value = self.key_downsample(self.value_project(key_feats))
        key = key.reshape(*key.shape[:2], -1)
        value = value.reshape(*value.shape[:2], -1).permute(0, 2, 1).contiguous()
        sim = F.softmax((self.channels**-0.5) * torch.matmul(query, key), dim=-1)
        context = torch.matmul(sim, value).permute(0, 2, 1).contiguous()
        context = context.reshape(b, -1, *query_feats.shape[2:])
        return self.out_project(context)


class AFNB(nn.Module):
    def __init__(self, low: int, high: int, channels: int, out: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList([SelfAttentionBlock(low, high, channels, out, False)])
        self.bottleneck = ConvModule(out + high, out, 1, act=False)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        context = torch.stack([s(high, low) for s in self.stages], 0).sum(0)
        return self.bottleneck(torch.cat([context, high], 1))


class APNB(nn.Module):
    def __init__(self, cin: int, channels: int, out: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList([SelfAttentionBlock(cin, cin, channels, out, True)])
        self.bottleneck = ConvModule(2 * cin, out, 1)

    def forward(self, feats: Tensor) -> Tensor:
        context = torch.stack([s(feats, feats) for s in self.stages], 0).sum(0)
        return self.bottleneck(torch.cat([context, feats], 1))


class ANNHead(nn.Module):
    def __init__(
        self,
        num_classes: int,
        channels: int = 512,
        project: int = 256,
        in_channels: tuple[int, int] = (1024, 2048),
    ) -> None:
        super().__init__()
        low, high = in_channels
        self.fusion = AFNB(low, high, project, high)
        self.bottleneck = ConvModule(high, channels, 3, padding=1)
        self.context = APNB(channels, project, channels)
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, inputs: list[Tensor]) -> Tensor:
        out = self.dropout(self.fusion(inputs[2], inputs[3]))
        out = self.context(self.bottleneck(out))
        return self.conv_seg(self.dropout(out))


class FCNHead(nn.Module):
    """num_convs=1, concat_input=False, on in_index 2."""

    def __init__(self, num_classes: int, channels: int = 256, in_channels: int = 1024) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvModule(in_channels, channels, 3, padding=1))
        self.dropout = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, inputs: list[Tensor]) -> Tensor:
        return self.conv_seg(self.dropout(self.convs(inputs[2])))


def cross_entropy(
    logits: Tensor,
    label: Tensor,
    ignore_index: int = 255,
    class_weight: Tensor | None = None,
    avg_non_ignore: bool = False,
) -> Tensor:
    """mmseg's ``cross_entropy`` with reduction "mean": per-pixel class-weighted
    losses (ignored pixels 0), then ``weight_reduce_loss``: their sum over
    (the number of pixels + float32 eps), or with ``avg_non_ignore`` over
    (the valid count + eps); without class weights, as the ANN recipes."""
    loss = F.cross_entropy(
        logits, label, weight=class_weight, reduction="none", ignore_index=ignore_index
    )
    avg_factor = label.numel()
    if avg_non_ignore:
        avg_factor -= (label == ignore_index).sum().item()
    return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)


class PolyLR:
    """mmengine's PolyLR stepped per iteration after the optimizer:
    lr <- (lr - eta_min) * (1 - 1 / (total - t + 1)) ** power + eta_min."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, total: int, power: float, eta_min: float
    ) -> None:
        self.optimizer, self.total, self.power, self.eta_min = optimizer, total, power, eta_min
        self.last_step = 0

    def step(self) -> None:
        self.last_step += 1
        factor = (1 - 1 / (self.total - self.last_step + 1)) ** self.power
        for group in self.optimizer.param_groups:
            group["lr"] = (group["lr"] - self.eta_min) * factor + self.eta_min


class EncoderDecoder(nn.Module):
    def __init__(
        self,
        depth: int,
        num_classes: int,
        align_corners: bool = False,
        backbone: nn.Module | None = None,
        widths: dict[str, int] | None = None,
    ) -> None:
        """``backbone`` replaces ResNetV1c(depth); ``widths`` (low, high,
        channels, project, aux) the recipe's 1024, 2048, 512, 256, 256, as
        mmseg's head configs (in_channels, channels, project_channels) set them."""
        super().__init__()
        w = {"low": 1024, "high": 2048, "channels": 512, "project": 256, "aux": 256}
        w.update(widths or {})
        self.backbone = ResNetV1c(depth) if backbone is None else backbone
        self.decode_head = ANNHead(num_classes, w["channels"], w["project"], (w["low"], w["high"]))
        self.auxiliary_head = FCNHead(num_classes, w["aux"], w["low"])
        self.align_corners = align_corners

    def loss(self, img: Tensor, label: Tensor, ignore_index: int = 255) -> dict[str, Tensor]:
        """Training losses as the ANN recipes configure them: decode head
        CrossEntropyLoss (loss_weight 1.0), auxiliary FCN head 0.4, both
        avg_non_ignore=False, logits resized to the label (B, H, W)."""
        feats = self.backbone(img)
        losses = {}
        for name, head, weight in (
            ("decode.loss_ce", self.decode_head, 1.0),
            ("aux.loss_ce", self.auxiliary_head, 0.4),
        ):
            logits = F.interpolate(
                head(feats), label.shape[1:], mode="bilinear", align_corners=self.align_corners
            )
            losses[name] = weight * cross_entropy(logits, label, ignore_index)
        return losses

    def encode_decode(self, img: Tensor) -> Tensor:
        out = self.decode_head(self.backbone(img))
        return F.interpolate(out, img.shape[2:], mode="bilinear", align_corners=self.align_corners)

    def slide_inference(
        self, img: Tensor, crop: tuple[int, int], stride: tuple[int, int]
    ) -> Tensor:
        (h_stride, w_stride), (h_crop, w_crop) = stride, crop
        b, _, h_img, w_img = img.size()
        h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
        preds = img.new_zeros((b, self.decode_head.conv_seg.out_channels, h_img, w_img))
        count = img.new_zeros((b, 1, h_img, w_img))
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y1, x1 = h_idx * h_stride, w_idx * w_stride
                y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
                y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
                logit = self.encode_decode(img[:, :, y1:y2, x1:x2])
                preds += F.pad(logit, (x1, preds.shape[3] - x2, y1, preds.shape[2] - y2))
                count[:, :, y1:y2, x1:x2] += 1
        return preds / count
