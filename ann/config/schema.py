"""Typed schemas of the config groups every run shares, checked at start-up.

Each group (trainer, optimizer and its ``paramwise`` options, scheduler,
evaluator, the keys every dataset has, and the model's own keys, those of its
backbone and of its heads) is a dataclass whose fields carry the expected type
and range. A nested group is named by its dotted path (``model.backbone``).
:func:`check_config` compares a composed config with them before anything is
built or read, and reports the first bad value as one line naming the key,
the value and what is expected (a :class:`ConfigError`). Keys a group does
not list (a custom backbone's own, an optimizer's extra arguments) are left
alone; unknown keys on the command line are already refused by Hydra.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from omegaconf import DictConfig, OmegaConf

from ann.errors import ConfigError
from ann.evaluation.options import AMP_DTYPES, AVERAGES, FORMATS, MODES, check_options
from ann.models.heads.ann_head import CONTEXTS, FUSIONS
from ann.models.heads.options import ATTENTION_IMPLS, NORMALIZATIONS, OUTPUTS
from ann.speed import COMPILE_MODES


class Pair(list):
    """[height, width] or (long, short): two integers. A class of its own, as
    ``list[int]`` compares equal to every other ``list[int]`` (pool sizes)."""


def _key(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    required: bool = True,
    length: int | None = None,
) -> Any:
    """A schema field with an optional range (of a number or of a list's
    items) and, for a list, an exact ``length``; ``required=False``: checked
    only if present."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "req": required, "len": length}
    return field(default=None, metadata=meta)


@dataclass
class TrainerSchema:
    max_iters: int = _key(ge=1)
    val_interval: int = _key(ge=1)
    ckpt_interval: int = _key(ge=1)
    log_interval: int = _key(ge=1)
    batch_size: int = _key(ge=1)
    num_workers: int = _key(ge=0)
    amp: bool | Literal["auto"] = _key()
    amp_dtype: Literal[AMP_DTYPES] = _key()
    channels_last: bool | Literal["auto"] = _key()
    compile: bool = _key()
    compile_mode: Literal[COMPILE_MODES] = _key()
    cudnn_benchmark: bool = _key()
    tf32: bool = _key()
    seed: int = _key(ge=0)
    resume: bool | Literal["force"] = _key()
    load_from: str | None = _key()
    keep_last: int = _key(ge=0)
    sync_bn: bool = _key()
    deterministic: bool = _key()
    clip_grad: float | None = _key(gt=0)
    accumulate: int = _key(ge=1)
    num_vis: int = _key(ge=0)
    dist_timeout_min: float = _key(gt=0)


@dataclass
class OptimizerSchema:
    lr: float = _key(gt=0)
    weight_decay: float = _key(ge=0, required=False)
    momentum: float = _key(ge=0, lt=1, required=False)
    fused: bool = _key(required=False)


@dataclass
class SchedulerSchema:
    power: float = _key(gt=0, required=False)
    min_lr: float = _key(ge=0, required=False)
    warmup_iters: int = _key(ge=0, required=False)
    warmup_ratio: float = _key(gt=0, le=1, required=False)


@dataclass
class EvaluatorSchema:
    mode: Literal[MODES] = _key()
    scales: list[float] = _key(gt=0)
    flip: bool = _key()
    crop_size: Pair | None = _key(gt=0)
    stride: Pair | None = _key(gt=0)
    average: Literal[AVERAGES] = _key()
    save_predictions: Literal[FORMATS] | None = _key()
    num_workers: int = _key(ge=0)
    amp: bool | Literal["auto"] = _key()
    amp_dtype: Literal[AMP_DTYPES] = _key()
    channels_last: bool = _key()
    # Absent from configs saved before the fast path existed.
    fast: bool = _key(required=False)
    backend: Literal["torch", "inductor", "onnxruntime"] | None = _key(required=False)


@dataclass
class DatasetSchema:
    name: str = _key()
    root: str = _key()
    num_classes: int = _key(ge=1)
    ignore_index: int = _key(ge=0, le=255)
    crop_size: Pair | None = _key(gt=0, required=False)
    scale: Pair | None = _key(gt=0, required=False)


@dataclass
class ParamwiseSchema:
    """The keyword arguments of ``ann.engine.optim.param_groups`` (the set is
    closed: any other key would fail there as an unexpected argument)."""

    norm_decay: bool = _key(required=False)
    bias_decay: bool = _key(required=False)
    # 0 would silently freeze the heads; freezing is frozen_stages' job.
    head_lr_mult: float = _key(gt=0, required=False)


@dataclass
class ModelSchema:
    num_classes: int = _key(ge=1)
    aux_weight: float = _key(ge=0, required=False)
    align_corners: bool = _key(required=False)


# Every field optional: a user's own backbone class need not take these
# arguments, while the ones it does take are still checked.
@dataclass
class BackboneSchema:
    depth: Literal[18, 34, 50, 101, 152] = _key(required=False)
    output_stride: Literal[8, 16, 32] = _key(required=False)
    stem: Literal["deep", "standard"] = _key(required=False)
    stem_channels: int = _key(ge=1, required=False)
    maxpool_ceil: bool = _key(required=False)
    base_channels: int = _key(ge=1, required=False)
    pretrained: str | None = _key(required=False)
    norm_eval: bool = _key(required=False)
    frozen_stages: int = _key(ge=-1, le=4, required=False)
    out_channels: list[int] = _key(ge=1, length=4, required=False)


@dataclass
class HeadSchema:
    """Keys common to the decode and auxiliary heads (ANN, FCN, non-local);
    a head without one of them (an FCN head has no key_channels) skips it."""

    channels: int = _key(ge=1, required=False)
    num_classes: int = _key(ge=1, required=False)
    key_channels: int = _key(ge=1, required=False)
    value_channels: int = _key(ge=1, required=False)
    fusion_channels: int | None = _key(ge=1, required=False)
    pool_sizes: list[int] = _key(ge=1, required=False)
    dropout: float = _key(ge=0, lt=1, required=False)
    block_dropout: float = _key(ge=0, lt=1, required=False)
    fusion_dropout: float = _key(ge=0, lt=1, required=False)
    query_key_bn_updates: Literal[1, 2] = _key(required=False)
    attention: Literal[ATTENTION_IMPLS] = _key(required=False)
    normalization: Literal[NORMALIZATIONS] = _key(required=False)
    output: Literal[OUTPUTS] = _key(required=False)
    fusion: Literal[FUSIONS] = _key(required=False)
    context: Literal[CONTEXTS] = _key(required=False)


@dataclass
class TransformSchema:
    """Input normalisation of a dataset's train/val/test pipeline, where a
    config sets it (otherwise the transforms' ImageNet RGB defaults apply)."""

    mean: list[float] = _key(ge=0, le=1, length=3, required=False)
    std: list[float] = _key(gt=0, le=1, length=3, required=False)
    channel_order: Literal["rgb", "bgr"] = _key(required=False)


# A dotted name is a group nested in another; it is checked with its parent
# (check_config(cfg, ("model",)) covers model.backbone too) and only when present.
GROUPS: dict[str, type] = {
    "trainer": TrainerSchema,
    "optimizer": OptimizerSchema,
    "optimizer.paramwise": ParamwiseSchema,
    "scheduler": SchedulerSchema,
    "evaluator": EvaluatorSchema,
    "dataset": DatasetSchema,
    "dataset.train.transforms": TransformSchema,
    "dataset.val.transforms": TransformSchema,
    "dataset.test.transforms": TransformSchema,
    "model": ModelSchema,
    "model.backbone": BackboneSchema,
    "model.decode_head": HeadSchema,
    "model.aux_head": HeadSchema,
}
CLOSED_GROUPS = frozenset({"optimizer.paramwise"})


def _describe(hint: Any, meta: dict) -> str:
    """'an integer ≥ 1', 'one of bf16, fp16', 'null or [h, w] ...'."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        parts = [_describe(a, meta) for a in args if a is not type(None)]
        return " or ".join(["null"] * (type(None) in args) + parts)
    if origin is Literal:
        return str(args[0]) if len(args) == 1 else "one of " + ", ".join(str(a) for a in args)
    bounds = [
        f"{sym} {meta[k]:g}"
        for k, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))
        if meta.get(k) is not None
    ]
    rng = f" {' and '.join(bounds)}" if bounds else ""
    if hint is Pair:
        return f"a list of two integers{rng}, e.g. [512, 1024]"
    if origin is list:
        items = "integers" if args[0] is int else "numbers"
        if meta.get("len"):
            return f"a list of {meta['len']} {items}{rng}"
        return f"a non-empty list of {items}{rng}"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names[hint] + rng


def _in_range(value: float, meta: dict) -> bool:
    checks = (
        ("ge", value.__ge__),
        ("gt", value.__gt__),
        ("le", value.__le__),
        ("lt", value.__lt__),
    )
    return all(meta.get(k) is None or op(meta[k]) for k, op in checks)


def _valid(value: Any, hint: Any, meta: dict) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None:
            return type(None) in args
        return any(_valid(value, a, meta) for a in args if a is not type(None))
    if origin is Literal:
        # type-strict: 50.0 or true are not the choices 50 or 1
        return any(value == a and type(value) is type(a) for a in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and _in_range(value, meta)
    if hint is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and _in_range(float(value), meta)
    if hint is str:
        return isinstance(value, str)
    if hint is Pair:
        pair = isinstance(value, list | tuple) and len(value) == 2
        return pair and all(_valid(v, int, meta) for v in value)
    if origin is list:
        if not isinstance(value, list | tuple) or not value:
            return False
        if meta.get("len") and len(value) != meta["len"]:
            return False
        return all(_valid(v, args[0], meta) for v in value)
    raise TypeError(f"unsupported schema type {hint}")


def check_group(name: str, values: dict[str, Any], schema: type) -> None:
    """Raises a one-line ConfigError for the first key of ``values`` (the
    resolved group ``name``) that does not fit ``schema``."""
    hints = typing.get_type_hints(schema)
    if name in CLOSED_GROUPS:
        known = [f.name for f in dataclasses.fields(schema)]
        for key in values:
            if key not in known:
                raise ConfigError(f"{name}.{key}: unknown key (expected one of {', '.join(known)})")
    for f in dataclasses.fields(schema):
        key = f"{name}.{f.name}"
        if f.name not in values:
            if f.metadata["req"]:
                raise ConfigError(
                    f"{key}: missing (expected {_describe(hints[f.name], f.metadata)})"
                )
            continue
        value = values[f.name]
        if not _valid(value, hints[f.name], f.metadata):
            shown = "null" if value is None else repr(value)
            raise ConfigError(
                f"{key}={shown}: expected {_describe(hints[f.name], f.metadata)}"
                f" (got {type(value).__name__})"
            )


def check_keys(cfg: DictConfig, keys: list[str]) -> None:
    """Checks only the dotted ``keys`` of ``cfg`` (``evaluator.flip``) against
    their group's schema, with :func:`check_group`'s one-line errors: for a
    saved config, whose groups may predate keys added since."""
    for key in keys:
        group, _, field = key.rpartition(".")
        schema = GROUPS.get(group)
        fields = {f.name: f for f in dataclasses.fields(schema)} if schema else {}
        if field not in fields:
            continue
        value = OmegaConf.select(cfg, key, default=None)
        hint = typing.get_type_hints(schema)[field]
        if not _valid(value, hint, fields[field].metadata):
            shown = "null" if value is None else repr(value)
            raise ConfigError(
                f"{key}={shown}: expected {_describe(hint, fields[field].metadata)}"
                f" (got {type(value).__name__})"
            )


def _check_crop_fits_scale(dataset: dict[str, Any]) -> None:
    crop, scale = dataset.get("crop_size"), dataset.get("scale")
    if crop is None or scale is None:
        return
    if max(crop) > max(scale) or min(crop) > min(scale):
        raise ConfigError(
            f"dataset.crop_size={list(crop)}: larger than the base scale dataset.scale="
            f"{list(scale)} (long, short); expected a crop that fits the image rescaled to it"
        )


def _expand(groups: tuple[str, ...]) -> list[str]:
    """The named groups followed by the groups nested in them, in GROUPS' order."""
    return [name for name in GROUPS if any(name == g or name.startswith(g + ".") for g in groups)]


TOP_GROUPS = tuple(name for name in GROUPS if "." not in name)


def check_config(cfg: DictConfig, groups: tuple[str, ...] = TOP_GROUPS) -> None:
    """Checks the ``groups`` of a composed config and the groups nested in them
    against their schemas (types, ranges, choices and the cross-key rules)
    before any data is read; raises a one-line :class:`ConfigError` naming the
    first bad key. A top-level group must exist; a nested one is checked when
    present (a model without an auxiliary head has no ``model.aux_head``)."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"no schema for config group(s) {unknown}")
    for name in _expand(groups):
        node = OmegaConf.select(cfg, name, default=None)
        if node is None:
            if "." in name:
                continue
            raise ConfigError(f"{name}: missing config group")
        if not isinstance(node, DictConfig):
            raise ConfigError(f"{name}={node!r}: expected a config group (key: value lines)")
        values = OmegaConf.to_container(node, resolve=True)
        check_group(name, values, GROUPS[name])
        if name == "dataset":
            _check_crop_fits_scale(values)
        if name == "evaluator":
            check_options(
                values["mode"],
                values["scales"],
                values["crop_size"],
                values["stride"],
                values["average"],
            )
