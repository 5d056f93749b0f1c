"""mmsegmentation's ANN model zoo (v0.5 files, ``{"meta", "state_dict"}``).

Their layout: ResNetV1c ``backbone.*`` (the names this project's backbone
uses), ``decode_head.fusion.stages.0.*`` (AFNB), ``decode_head.bottleneck``,
``decode_head.context.stages.0.*`` (APNB, whose ``query_project`` is the
same module as ``key_project`` and is saved twice), ``decode_head.conv_seg``
and an FCN ``auxiliary_head`` (``convs.0`` + ``conv_seg``, 256 channels).
ConvModules keep ``conv``/``bn`` sub-names and have no conv bias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ann.convert.layout import Converted, add_bn_counters, architecture, check_shared, rename
from ann.errors import CheckpointError

_AFNB = "decode_head.fusion.stages.0."
_APNB = "decode_head.context.stages.0."
RENAMES: list[tuple[str, str | None]] = [
    ("backbone.", "backbone."),
    (_AFNB + "query_project.conv.", "decode_head.fusion.query.0."),
    (_AFNB + "query_project.bn.", "decode_head.fusion.query.1."),
    (_AFNB + "key_project.conv.", "decode_head.fusion.key.0."),
    (_AFNB + "key_project.bn.", "decode_head.fusion.key.1."),
    (_AFNB + "value_project.", "decode_head.fusion.value."),
    (_AFNB + "out_project.", "decode_head.fusion.out_proj."),
    ("decode_head.fusion.bottleneck.conv.", "decode_head.fusion.fuse.0."),
    ("decode_head.fusion.bottleneck.bn.", "decode_head.fusion.fuse.1."),
    ("decode_head.bottleneck.conv.", "decode_head.bottleneck.0."),
    ("decode_head.bottleneck.bn.", "decode_head.bottleneck.1."),
    (_APNB + "key_project.conv.", "decode_head.context.query_key.0."),
    (_APNB + "key_project.bn.", "decode_head.context.query_key.1."),
    (_APNB + "query_project.", None),  # the key projection again (checked)
    (_APNB + "value_project.", "decode_head.context.value."),
    (_APNB + "out_project.", "decode_head.context.out_proj."),
    ("decode_head.context.bottleneck.conv.", "decode_head.context.fuse.0."),
    ("decode_head.context.bottleneck.bn.", "decode_head.context.fuse.1."),
    ("decode_head.conv_seg.", "decode_head.classifier."),
    ("auxiliary_head.convs.0.conv.", "aux_head.conv.0."),
    ("auxiliary_head.convs.0.bn.", "aux_head.conv.1."),
    ("auxiliary_head.conv_seg.", "aux_head.classifier."),
]

# (depth, classes, 769×769 crops) -> the experiment with mmsegmentation's recipe.
EXPERIMENTS = {
    (50, 19, False): "cityscapes_ann",
    (101, 19, False): "cityscapes_ann_r101",
    (50, 19, True): "cityscapes_ann_769",
    (101, 19, True): "cityscapes_ann_r101_769",
    (50, 150, False): "ade20k_ann",
    (101, 150, False): "ade20k_ann_r101",
    (50, 21, False): "voc_aug_ann",
    (101, 21, False): "voc_aug_ann_r101",
}


def from_mmseg(state: dict[str, Tensor], meta: dict[str, Any], path: Path) -> Converted:
    """mmsegmentation ANN state dict -> this project's names (no tensor changes)."""
    stages = {k.split(".")[3] for k in state if k.startswith("decode_head.fusion.stages.")}
    if len(stages) > 1:
        raise CheckpointError(
            f"{path}: an mmsegmentation ANN with {len(stages)} query scales; "
            "the published models (and this converter) have one"
        )
    check_shared(state, _APNB + "key_project.", _APNB + "query_project.", path)
    model = rename(state, RENAMES, path, "an mmsegmentation ANN checkpoint")
    add_bn_counters(model)
    arch = architecture(model)
    # mmsegmentation keeps the training config as text in meta["config"].
    info = meta.get("meta")
    config = str(info.get("config", "")) if isinstance(info, dict) else ""
    keys = [k for k in EXPERIMENTS if k[:2] == (arch["depth"], arch["num_classes"])]
    if config:
        keys = [k for k in keys if k[2] == ("769" in config)]
    return Converted(
        model=model,
        source="mmseg",
        experiments=[EXPERIMENTS[k] for k in keys],
        **arch,
    )
