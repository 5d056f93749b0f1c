"""The fusion block's fuse composed into the head's bottleneck, for inference.

In ANNHead, AFNB ends in a 1×1 conv + BN with no ReLU over cat[Wo(O), res5]
(then Dropout2d, the identity in eval), and the bottleneck's 3×3 conv reads
that map. Two linear maps in a row are one: with the BNs folded,

    bottleneck(fuse(z)) = relu(W3 * (A_x·x + A_c·O + a) + b3)
                        = relu((W3·A_x) * x + (W3·A_c) * O + (W3·a) * 1_HW + b3)

where ``*`` is the 3×3 convolution and ``1_HW`` a map of ones (zero-padded
like the fused map was, so the border taps come out right). At R-50 sizes
this skips the (2048 × 4096) 1×1 fuse, 77 of the head's 243 GFLOP at
512×1024, for a (512 × 256 × 3 × 3) conv on the attention output (19
GFLOP). :func:`merge_fusion_bottleneck` applies it to an eval copy; the
trained modules and their state_dict never change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.models.heads.afnb import AFNB
from ann.models.heads.ann_head import ANNHead
from ann.models.heads.attention import bn_fold, fuse_affine


class FusionBottleneck(nn.Module):
    """AFNB followed by the bottleneck ConvBN(ReLU), as one eval-mode module.

    forward(low (B, C4, h, w), high (B, C5, H, W)) -> (B, C', H, W), what
    ``bottleneck(fusion(low, high))`` returns in eval (to rounding).
    """

    def __init__(self, fusion: AFNB, bottleneck: nn.Sequential) -> None:
        super().__init__()
        self.fusion = fusion
        conv = bottleneck[0]
        self.conv_args = {"padding": conv.padding, "dilation": conv.dilation}
        self.relu = len(bottleneck) > 2
        w_x, w_ctx, bias, _ = fuse_affine(fusion.out_proj, fusion.fuse)
        w_x, w_ctx, bias = w_x.double(), w_ctx.double(), bias.double()
        weight, shift = conv.weight.double(), torch.zeros(conv.out_channels, dtype=torch.float64)
        if conv.bias is not None:
            shift = conv.bias.double()
        if isinstance(bottleneck[1], nn.modules.batchnorm._BatchNorm):
            scale, bn_shift = bn_fold(bottleneck[1])
            weight = weight * scale.double()[:, None, None, None]
            shift = shift * scale.double() + bn_shift.double()
        dtype = conv.weight.dtype
        # (P, O, k, k) composed with (O, C): (P, C, k, k), in fp64 then back.
        self.register_buffer("w_x", torch.einsum("pokl,oc->pckl", weight, w_x).to(dtype))
        self.register_buffer("w_ctx", torch.einsum("pokl,oc->pckl", weight, w_ctx).to(dtype))
        self.register_buffer("w_one", torch.einsum("pokl,o->pkl", weight, bias)[:, None].to(dtype))
        self.register_buffer("shift", shift.to(dtype))

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        b, _, h, w = high.shape
        context = self.fusion.attention_context(low, high)  # (B, N, Cv)
        # Tokens are row-major (h, w): a channels_last view, no copy.
        context = context.view(b, h, w, -1).permute(0, 3, 1, 2)
        out = F.conv2d(high, self.w_x, self.shift, **self.conv_args)
        out = out + F.conv2d(context.to(out.dtype), self.w_ctx, **self.conv_args)
        out = out + F.conv2d(torch.ones_like(high[:1, :1]), self.w_one, **self.conv_args)
        return out.relu() if self.relu else out


def mergeable(head: nn.Module) -> bool:
    """True for an eval-mode ANNHead whose AFNB ends in a fuse without ReLU
    (``output: concat``) and whose bottleneck is a plain stride-1 conv."""
    fusion = getattr(head, "fusion", None)
    if not isinstance(head, ANNHead) or not isinstance(fusion, AFNB) or head.training:
        return False
    if fusion.output != "concat" or len(fusion.fuse) > 2:
        return False
    conv = head.bottleneck[0]
    return conv.stride == (1, 1) and conv.groups == 1 and bn_fold(fusion.fuse[1]) is not None


@torch.no_grad()
def merge_fusion_bottleneck(model: nn.Module) -> int:
    """Replaces, in place, the fusion + bottleneck of every mergeable ANNHead
    in the eval-mode ``model`` (a copy made for inference) by one
    :class:`FusionBottleneck`. Returns how many heads changed."""
    heads = [m for m in model.modules() if mergeable(m)]
    for head in heads:
        head.fusion = FusionBottleneck(head.fusion, head.bottleneck)
        head.fusion_dropout = nn.Identity()
        head.bottleneck = nn.Identity()
    return len(heads)


__all__ = ["FusionBottleneck", "merge_fusion_bottleneck", "mergeable"]
