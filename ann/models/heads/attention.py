"""The attention core shared by APNB, AFNB and the dense non-local block.

Notation follows the paper: queries phi over all N = H*W positions, keys theta
and values gamma either dense (N positions) or sampled by pyramid pooling
(S = sum(s*s) anchors).

Only tensor math lives here (option checks: ``options``; the blocks' shared
construction: ``block``). Everything here is written to keep the blocks lean without changing their
results (see docs/models.md, "Where the memory goes"):

* pyramid pooling is two small matmuls with bin weights computed from the
  runtime shape, so an ONNX export with dynamic H/W pools correctly at every
  size (``F.adaptive_avg_pool2d`` can get its bins baked in at trace time);
* the fuse conv over ``cat[Wo(context), x]`` is evaluated as
  ``W_x·x + (W_c·Wo)·context``: the concatenation and the Wo output never exist;
* in eval the BatchNorms are folded into the convs on the fly (from the
  current parameters, so state_dict keys and checkpoints are unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ann.models.heads.options import ATTENTION_IMPLS, NORMALIZATIONS


def _bin_weights(length: int | torch.SymInt, sizes: Sequence[int], like: Tensor) -> Tensor:
    """Averaging weights of adaptive pooling along one axis.

    Row r of the (sum(sizes), length) result averages positions
    [floor(i*L/s), ceil((i+1)*L/s)) for bin i of size s, exactly PyTorch's
    adaptive pooling bins, computed from ``length`` at run time.
    """
    rows = []
    pos = torch.arange(length, device=like.device)
    for s in sizes:
        i = torch.arange(s, device=like.device)
        start = torch.div(i * length, s, rounding_mode="floor")
        end = torch.div((i + 1) * length + s - 1, s, rounding_mode="floor")
        mask = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
        mask = mask.to(like.dtype)
        rows.append(mask / mask.sum(dim=1, keepdim=True))
    return torch.cat(rows, dim=0)


def is_nhwc(x: Tensor) -> bool:
    """True for a 4-D tensor stored channels_last (and not also plain NCHW, as
    a tensor with one channel or one position is): its GEMMs run as
    (B, N, C) token matrices, which are views of that storage."""
    return (
        x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
    )


def pyramid_pool(x: Tensor, sizes: Sequence[int]) -> Tensor:
    """Adaptive average pooling to every size in ``sizes``, flattened.

    (B, C, H, W) -> (B, C, S), S = sum(s*s), anchors in the order of
    ``torch.cat([F.adaptive_avg_pool2d(x, s).flatten(2) for s in sizes], 2)``.
    For a channels_last ``x`` the result is a (B, S, C)-contiguous tensor
    seen as (B, C, S), and ``x`` is read in place (no NCHW copy).
    """
    h, w = x.shape[-2:]
    pool_h = _bin_weights(h, sizes, x)  # (T, H), T = sum(sizes)
    pool_w = _bin_weights(w, sizes, x)  # (T, W)
    if is_nhwc(x):
        rows = pool_w @ x.permute(0, 2, 3, 1)  # (B, H, T, C): W pooled, x unchanged
        pooled = pool_h @ rows.transpose(1, 2)  # (B, T_w, T_h, C)
        out, offset = [], 0
        for s in sizes:
            block = pooled[:, offset : offset + s, offset : offset + s]
            out.append(block.transpose(1, 2).flatten(1, 2))  # anchors row-major (h, w)
            offset += s
        return torch.cat(out, dim=1).transpose(1, 2)
    # W first: it is usually the longer axis, so the intermediate is smallest.
    pooled = pool_h @ (x @ pool_w.transpose(0, 1))  # (B, C, T, T)
    out, offset = [], 0
    for s in sizes:
        out.append(pooled[..., offset : offset + s, offset : offset + s].flatten(2))
        offset += s
    return torch.cat(out, dim=2)


class PyramidPooling(nn.Module):
    """Samples S = sum(s*s) anchors by adaptive average pooling to each size.

    (B, C, H, W) -> (B, C, S); S = 110 for the default sizes (1, 3, 6, 8).
    """

    def __init__(self, sizes: Sequence[int] = (1, 3, 6, 8)) -> None:
        super().__init__()
        if not sizes:
            raise ValueError("pool_sizes must name at least one size, e.g. (1, 3, 6, 8)")
        self.sizes = tuple(int(s) for s in sizes)

    def forward(self, x: Tensor) -> Tensor:
        return pyramid_pool(x, self.sizes)


def attend(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    scale: float,
    impl: str = "sdpa",
    normalization: str = "softmax",
) -> Tensor:
    """f(query keyᵀ · scale) · value, f over the S anchors (the key positions).

    Args:
        query: (B, N, C') queries phi, one per output position.
        key: (B, S, C') keys theta (sampled or dense).
        value: (B, S, Cv) values gamma at the same anchors as ``key``.
        scale: multiplier of the similarity (key_channels ** -0.5).
        impl: ``"sdpa"`` (torch's fused scaled_dot_product_attention) or
            ``"matmul"`` (explicit similarity map, kept as the reference path).
        normalization: f, one of :data:`NORMALIZATIONS`: ``"softmax"`` (row
            softmax), ``"rescale"`` (divided by S) or ``"none"`` (identity).
            The ``scale`` applies in all three, so only f differs.

    Returns:
        (B, N, Cv) context for every query.
    """
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention impl must be one of {ATTENTION_IMPLS}, got {impl!r}")
    if normalization == "softmax":
        if impl == "sdpa":
            out = F.scaled_dot_product_attention(
                query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1), scale=scale
            )
            return out.squeeze(1)
        sim = torch.bmm(query, key.transpose(1, 2)).mul_(scale)
        return torch.bmm(sim.softmax(dim=-1), value)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    # A linear f: the context is (query keyᵀ) value · factor.
    factor = scale / key.shape[1] if normalization == "rescale" else scale
    if impl == "matmul":
        sim = torch.bmm(query, key.transpose(1, 2)).mul_(factor)  # (B, N, S)
        return torch.bmm(sim, value)
    # SDPA fuses only the softmax. Without one, the product reassociates to
    # query (keyᵀ value): a (C', Cv) matrix instead of the N×S map, so even
    # dense keys (S = N) cost O(N·C'·Cv) time and no O(N²) memory.
    return torch.bmm(query, torch.bmm(key.transpose(1, 2), value).mul_(factor))


def bn_fold(bn: nn.Module) -> tuple[Tensor, Tensor] | None:
    """(scale, shift) with bn(y) == y * scale + shift per channel, or None
    when the BatchNorm normalises with batch statistics (training)."""
    if bn.training or bn.running_mean is None:
        return None
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def project(block: nn.Sequential, x: Tensor) -> Tensor:
    """A 1×1 ConvBNReLU (``layers.ConvBNReLU``) on x (B, C, H, W) -> (B, C', H, W);
    in eval the BN is folded into the conv and the ReLU runs in place."""
    folded = bn_fold(block[1])
    if folded is None:
        return block(x)
    scale, shift = folded
    b, _, h, w = x.shape
    weight = block[0].weight[:, :, 0, 0] * scale[:, None]
    if is_nhwc(x):
        # Tokens (B, N, C) @ Wᵀ: input and output stay channels_last views.
        out = torch.baddbmm(shift, tokens(x), weight.t().expand(b, -1, -1))
        out = out.view(b, h, w, -1).permute(0, 3, 1, 2)
        return out.relu_() if len(block) > 2 else out
    # A GEMM straight into a plain (B, C', N) tensor: oneDNN's 1×1 conv would
    # reorder input and output through blocked layouts (extra full-size copies).
    out = torch.baddbmm(shift[:, None], weight.expand(b, -1, -1), x.reshape(b, -1, h * w))
    out = out.view(b, -1, h, w)
    return out.relu_() if len(block) > 2 else out


def tokens(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, N, C), N = H*W: a view in NCHW and in channels_last."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


def linear_1x1(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 1×1 conv on flattened positions: (B, C, S) -> (B, C', S)."""
    out = torch.matmul(conv.weight[:, :, 0, 0], x)
    return out if conv.bias is None else out + conv.bias[:, None]


def fuse_affine(out_proj: nn.Conv2d, fuse: nn.Sequential) -> tuple[Tensor, Tensor, Tensor, bool]:
    """``fuse[0]`` over cat[out_proj(c), x] as one affine map of (c, x):
    (w_x (O, Cin), w_ctx (O, Cv), bias (O,), folded) with
    ``fuse[0](cat[out_proj(c), x]) == w_x·x + w_ctx·c + bias`` per position;
    ``folded``: the fuse's BatchNorm is in them (it uses running statistics,
    eval), else it is still to apply."""
    n_out = out_proj.out_channels
    weight = fuse[0].weight[:, :, 0, 0]  # (O, O + Cin)
    w_ctx, w_x = weight[:, :n_out], weight[:, n_out:]
    # fuse_c(Wo c + b_o) = (W_c Wo) c + W_c b_o: one (O, Cv) matrix instead of two convs.
    bias = w_ctx @ out_proj.bias
    w_ctx = w_ctx @ out_proj.weight[:, :, 0, 0]
    folded = bn_fold(fuse[1])
    if folded is not None:
        scale, shift = folded
        w_x, w_ctx, bias = w_x * scale[:, None], w_ctx * scale[:, None], bias * scale + shift
    return w_x, w_ctx, bias, folded is not None


def fused_output(out_proj: nn.Conv2d, fuse: nn.Sequential, context: Tensor, x: Tensor) -> Tensor:
    """fuse(cat[out_proj(context), x]) without the concatenation.

    Args:
        out_proj: Wo, a 1×1 conv value_channels -> O.
        fuse: a 1×1 ConvBN(ReLU) (``layers.ConvBNReLU``) over O + Cin channels.
        context: (B, N, Cv) attention output, N = H*W.
        x: (B, Cin, H, W) the map the context is fused with.

    Returns:
        (B, O, H, W). Equal to the unfused computation (tests check 1e-5);
        the 2×out-channel concatenation and Wo's output are never built, and
        in eval the BN is folded in.
    """
    b, _, h, w = x.shape
    w_x, w_ctx, bias, folded = fuse_affine(out_proj, fuse)
    if is_nhwc(x):
        # Token-major GEMMs (B, N, ·) @ Wᵀ: x and the result stay channels_last.
        out = torch.baddbmm(bias, tokens(x), w_x.t().expand(b, -1, -1))
        # In-place ops are not autocast: match the dtype of ``out`` (fp16/bf16 under AMP).
        w_ctx, context = w_ctx.to(out.dtype), context.to(out.dtype)
        out = out.baddbmm_(context, w_ctx.t().expand(b, -1, -1))
        out = out.view(b, h, w, -1).permute(0, 3, 1, 2)
    else:
        # Two GEMMs accumulating into one (B, O, N) buffer (``project``: why not conv2d).
        out = torch.baddbmm(bias[:, None], w_x.expand(b, -1, -1), x.reshape(b, -1, h * w))
        w_ctx, context = w_ctx.to(out.dtype), context.to(out.dtype)
        out = out.baddbmm_(w_ctx.expand(b, -1, -1), context.transpose(1, 2))
        out = out.view(b, -1, h, w)
    if not folded:
        out = fuse[1](out)
    return out.relu_() if len(fuse) > 2 else out


def residual_output(out_proj: nn.Conv2d, context: Tensor, x: Tensor) -> Tensor:
    """Y = Wo(O) + X.

    Args:
        out_proj: Wo, a 1×1 conv value_channels -> C.
        context: (B, N, Cv) attention output O, N = H*W.
        x: (B, C, H, W) the block's input.

    Returns:
        (B, C, H, W).
    """
    b, c, h, w = x.shape
    weight = out_proj.weight[:, :, 0, 0]  # (C, Cv)
    # Token-major (B, N, C), seen as (B, C, H, W) without a copy.
    wo = torch.matmul(context, weight.t()) + out_proj.bias
    return x + wo.view(b, h, w, c).permute(0, 3, 1, 2)
