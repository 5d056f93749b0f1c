"""Shared steps of the converters: reading a foreign file safely, renaming
keys by prefix, folding conv biases into BatchNorm, and the result type."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ann.errors import CheckpointError
from ann.safe_load import load_tensors

# Every ANN checkpoint of this project holds these (ResNet backbone, AFNB,
# bottleneck, APNB, classifier); the auxiliary head is optional.
REQUIRED_PREFIXES = (
    "backbone.stem.",
    "backbone.layer4.",
    "decode_head.fusion.query.",
    "decode_head.fusion.key.",
    "decode_head.fusion.value.",
    "decode_head.fusion.out_proj.",
    "decode_head.fusion.fuse.",
    "decode_head.bottleneck.",
    "decode_head.context.query_key.",
    "decode_head.context.value.",
    "decode_head.context.out_proj.",
    "decode_head.context.fuse.",
    "decode_head.classifier.",
)


@dataclass
class Converted:
    """A converted model: ``model`` is this project's state dict; ``depth``,
    ``num_classes``, ``stem_channels`` and ``aux_channels`` describe the
    architecture it needs; ``experiments`` the configs that match it."""

    model: dict[str, Tensor]
    source: str
    depth: int
    num_classes: int
    stem_channels: int
    aux_channels: int | None
    experiments: list[str] = field(default_factory=list)

    def checkpoint(self, origin: str | Path) -> dict[str, Any]:
        """The dict that ``ann.engine.checkpoint.load_checkpoint`` reads.

        ``experiment`` (the first match, None if none) is what
        ``ann.Segmenter.from_checkpoint`` composes to rebuild the model: a
        converted file carries no config of its own.
        """
        return {
            "model": self.model,
            "iteration": 0,
            "best_mIoU": -1.0,
            "experiment": self.experiments[0] if self.experiments else None,
            "converted_from": {
                "source": self.source,
                "file": str(origin),
                "experiments": list(self.experiments),
            },
        }


def describe_keys(state: dict[str, Any], count: int = 3) -> str:
    """'N tensors, e.g. a, b, c' for an error message."""
    keys = list(state)
    return f"{len(keys)} tensors, e.g. {', '.join(keys[:count]) or 'none'}"


def source_state(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors of a foreign checkpoint (under ``state_dict``/``model`` or
    bare; ``module.`` stripped) and its other top-level entries."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"input: no file at {path}")
    raw = load_tensors(path, "input")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found a {type(raw).__name__}")
    meta: dict[str, Any] = {}
    state: Any = raw
    for key in ("state_dict", "model"):
        if isinstance(raw.get(key), dict):
            state = raw[key]
            meta = {k: v for k, v in raw.items() if k != key}
            break
    tensors = {k: v for k, v in state.items() if torch.is_tensor(v)}
    if not tensors:
        found = ", ".join(list(raw)[:5])
        raise CheckpointError(f"{path}: holds no state dict of tensors (top-level keys: {found})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors, meta


def rename(
    state: dict[str, Tensor],
    table: Sequence[tuple[str, str | None]],
    path: Path,
    what: str,
) -> dict[str, Tensor]:
    """Renames every key by the longest matching source prefix in ``table``
    (a target of None drops the key). A key no prefix matches means another
    architecture: one error line naming a few of them."""
    ordered = sorted(table, key=lambda row: len(row[0]), reverse=True)
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        row = next((r for r in ordered if key.startswith(r[0])), None)
        if row is None:
            unknown.append(key)
        elif row[1] is not None:
            out[row[1] + key[len(row[0]) :]] = value
    if unknown:
        raise CheckpointError(
            f"{path}: not {what}: {len(unknown)} of its {len(state)} tensors have no place in "
            f"ANN, e.g. {', '.join(unknown[:3])}"
        )
    missing = [p for p in REQUIRED_PREFIXES if not any(k.startswith(p) for k in out)]
    if missing:
        raise CheckpointError(
            f"{path}: not {what}: nothing for {', '.join(p.rstrip('.') for p in missing[:3])} "
            f"({describe_keys(state)})"
        )
    return out


def check_shared(state: dict[str, Tensor], first: str, second: str, path: Path) -> None:
    """Asserts that the tensors under prefix ``second`` repeat those under
    ``first`` (one module saved under two names), so dropping one loses nothing."""
    for key, value in state.items():
        if key.startswith(second):
            twin = first + key[len(second) :]
            if twin not in state or not torch.equal(state[twin], value):
                raise CheckpointError(
                    f"{path}: {key} differs from {twin}; this converter expects query and "
                    "key to share one projection in APNB"
                )


def fold_conv_bias(state: dict[str, Tensor], prefixes: Sequence[str]) -> None:
    """For each ``P`` a conv ``P.0`` with a bias followed by BatchNorm ``P.1``:
    moves the bias into the BN's running mean (BN(Wx + b) with mean m equals
    BN(Wx) with mean m - b, exactly in eval; in training BN removes any
    per-channel constant). The subtraction is done in float64 and rounded once."""
    for prefix in prefixes:
        bias = state.pop(f"{prefix}.0.bias", None)
        if bias is None:
            continue
        mean = state[f"{prefix}.1.running_mean"]
        state[f"{prefix}.1.running_mean"] = (mean.double() - bias.double()).to(mean.dtype)


def add_bn_counters(state: dict[str, Tensor]) -> None:
    """Adds ``num_batches_tracked`` (0) to BatchNorms saved without it (older PyTorch)."""
    for key in [k for k in state if k.endswith(".running_var")]:
        counter = key[: -len("running_var")] + "num_batches_tracked"
        state.setdefault(counter, torch.tensor(0, dtype=torch.long))


def architecture(state: dict[str, Tensor]) -> dict[str, Any]:
    """Depth, classes, stem and auxiliary widths read off a converted state dict."""
    blocks = {k.split(".")[2] for k in state if k.startswith("backbone.layer3.")}
    depth = {6: 50, 23: 101, 36: 152}.get(len(blocks))
    if depth is None:
        raise CheckpointError(
            f"backbone with {len(blocks)} blocks in layer3: expected ResNet-50 (6) or -101 (23)"
        )
    aux = state.get("aux_head.conv.0.weight")
    return {
        "depth": depth,
        "num_classes": int(state["decode_head.classifier.weight"].shape[0]),
        "stem_channels": int(state["backbone.stem.6.weight"].shape[0]),
        "aux_channels": None if aux is None else int(aux.shape[0]),
    }
