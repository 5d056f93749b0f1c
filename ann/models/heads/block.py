"""``_AttentionBlock``: what APNB, AFNB and the dense non-local block share.

The option checks, Wo (zero-initialised), the output layout (the fuse over
cat[Wo(O), X] then Dropout2d, or the residual Wo(O) + X) and ``context()``.
A subclass builds its projections between ``super().__init__`` and
:meth:`_AttentionBlock._init_output` (that order keeps the global-RNG draws
of the default initialisation, hence seeded models, as they were), and
implements ``attention_context``.
"""

from __future__ import annotations

from torch import Tensor, nn

from ann.errors import ConfigError
from ann.models.heads.attention import fused_output, residual_output
from ann.models.heads.options import (
    NORMALIZATIONS,
    OUTPUTS,
    check_choice,
    check_impl,
    check_probability,
)
from ann.models.layers import ConvBNReLU


class _AttentionBlock(nn.Module):
    """Base of the attention blocks.

    The last input of ``forward``/``context`` is the map the block attends
    from (queries) and fuses with: its (H, W) are the output's.
    """

    def __init__(self, key_channels: int, attention: str, normalization: str) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.attention = check_impl(attention)
        self.normalization = check_choice("normalization", normalization, NORMALIZATIONS)

    def _init_output(
        self,
        output: str,
        value_channels: int,
        in_channels: int,
        out_channels: int,
        relu: bool,
        dropout: float,
    ) -> None:
        """Wo (``out_proj``) and, for ``output="concat"``, the fuse (``fuse``:
        1×1 ConvBN(ReLU) over Wo's output + ``in_channels``) and ``dropout``
        (Dropout2d). ``"residual"`` (Y = Wo(O) + X) has only Wo, and needs
        ``out_channels == in_channels``; ``relu`` and ``dropout`` are unused."""
        self.output = check_choice("output", output, OUTPUTS)
        if output == "residual" and out_channels != in_channels:
            raise ConfigError(
                f"output: residual adds Wo(O) to the input, so the block's output channels "
                f"({out_channels}) must equal its input channels ({in_channels}); "
                "use output: concat"
            )
        self.out_proj = nn.Conv2d(value_channels, out_channels, 1)
        # Zero: the block starts without its attention context (the references' init).
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)
        if output == "concat":
            self.fuse = ConvBNReLU(out_channels + in_channels, out_channels, 1, relu=relu)
            self.dropout = nn.Dropout2d(check_probability("dropout", dropout))

    def attention_context(self, *inputs: Tensor) -> Tensor:
        """The attention output O: -> (B, N, value_channels), N = H*W of the
        last input."""
        raise NotImplementedError

    def context(self, *inputs: Tensor) -> Tensor:
        """Attention context before Wo: -> (B, value_channels, H, W)."""
        b, _, h, w = inputs[-1].shape
        return self.attention_context(*inputs).transpose(1, 2).reshape(b, -1, h, w)

    def forward(self, *inputs: Tensor) -> Tensor:
        x = inputs[-1]
        context = self.attention_context(*inputs)
        if self.output == "residual":
            return residual_output(self.out_proj, context, x)
        return self.dropout(fused_output(self.out_proj, self.fuse, context, x))
