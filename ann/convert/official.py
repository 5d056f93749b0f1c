"""The authors' release (MendelXu/ANN, Cityscapes, R-101).

Their layout (``module.``-prefixed, from DataParallel): a deep stem
``backbone.prefix.{conv,bn}{1,2,3}`` 64/64/128 wide, followed by a max-pool
with ``ceil_mode=True``; ``fusion.stages.0.{f_key,f_query,f_value,W}`` and
``fusion.conv_bn_dropout`` (AFNB); ``context.0``/``context.1`` (the 3×3
bottleneck) and ``context.2`` (APNB, whose ``f_query`` is ``f_key`` saved
twice); ``cls``; ``dsn`` (the auxiliary head, 512 channels). Their head
convs carry a bias in front of BatchNorm, which is folded into the BN here;
BNReLU blocks nest the BN one level deeper (``f_key.1.0``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ann.convert.layout import (
    Converted,
    add_bn_counters,
    architecture,
    check_shared,
    fold_conv_bias,
    rename,
)

_AFNB = "fusion.stages.0."
_APNB = "context.2.stages.0."
RENAMES: list[tuple[str, str | None]] = [
    ("backbone.prefix.conv1.", "backbone.stem.0."),
    ("backbone.prefix.bn1.", "backbone.stem.1."),
    ("backbone.prefix.conv2.", "backbone.stem.3."),
    ("backbone.prefix.bn2.", "backbone.stem.4."),
    ("backbone.prefix.conv3.", "backbone.stem.6."),
    ("backbone.prefix.bn3.", "backbone.stem.7."),
    ("backbone.layer", "backbone.layer"),
    (_AFNB + "f_query.0.", "decode_head.fusion.query.0."),
    (_AFNB + "f_query.1.0.", "decode_head.fusion.query.1."),
    (_AFNB + "f_key.0.", "decode_head.fusion.key.0."),
    (_AFNB + "f_key.1.0.", "decode_head.fusion.key.1."),
    (_AFNB + "f_value.", "decode_head.fusion.value."),
    (_AFNB + "W.", "decode_head.fusion.out_proj."),
    ("fusion.conv_bn_dropout.0.", "decode_head.fusion.fuse.0."),
    ("fusion.conv_bn_dropout.1.", "decode_head.fusion.fuse.1."),
    ("context.0.", "decode_head.bottleneck.0."),
    ("context.1.0.", "decode_head.bottleneck.1."),
    (_APNB + "f_key.0.", "decode_head.context.query_key.0."),
    (_APNB + "f_key.1.0.", "decode_head.context.query_key.1."),
    (_APNB + "f_query.", None),  # the key projection again (checked)
    (_APNB + "f_value.", "decode_head.context.value."),
    (_APNB + "W.", "decode_head.context.out_proj."),
    ("context.2.conv_bn_dropout.0.", "decode_head.context.fuse.0."),
    ("context.2.conv_bn_dropout.1.0.", "decode_head.context.fuse.1."),
    ("cls.", "decode_head.classifier."),
    ("dsn.0.", "aux_head.conv.0."),
    ("dsn.1.0.", "aux_head.conv.1."),
    ("dsn.3.", "aux_head.classifier."),
]
# Conv (with bias) + BN pairs, in this project's names.
BIASED_CONVS = (
    "decode_head.fusion.query",
    "decode_head.fusion.key",
    "decode_head.fusion.fuse",
    "decode_head.bottleneck",
    "decode_head.context.query_key",
    "decode_head.context.fuse",
    "aux_head.conv",
)


def from_official(state: dict[str, Tensor], meta: dict[str, Any], path: Path) -> Converted:
    """The authors' state dict -> this project's names, conv biases folded into BN."""
    check_shared(state, _APNB + "f_key.", _APNB + "f_query.", path)
    model = rename(state, RENAMES, path, "a checkpoint of the authors' ANN (MendelXu/ANN)")
    fold_conv_bias(model, BIASED_CONVS)
    add_bn_counters(model)
    arch = architecture(model)
    experiments = ["cityscapes_ann_official"] if arch["num_classes"] == 19 else []
    return Converted(model=model, source="official", experiments=experiments, **arch)
