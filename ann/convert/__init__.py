"""Published ANN checkpoints into this project's checkpoint format.

``convert(source, path)`` reads an mmsegmentation model-zoo file (``mmseg``)
or the authors' release (``official``, MendelXu/ANN) with ``weights_only=True``
and returns a checkpoint that ``tools/convert.py`` (:mod:`ann.commands.convert`)
writes and ``tools/eval.py``, ``tools/infer.py``,
``tools/export.py`` and ``trainer.load_from`` read like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ann.convert.layout import Converted, describe_keys, source_state
from ann.convert.mmseg import from_mmseg
from ann.convert.official import from_official
from ann.errors import CheckpointError

SOURCES = {"mmseg": from_mmseg, "official": from_official}

__all__ = ["SOURCES", "Converted", "convert"]


def convert(source: str, path: str | Path) -> Converted:
    """Converts the file at ``path`` from layout ``source`` (``mmseg`` or ``official``).

    Raises :class:`CheckpointError` with one line for a file of the wrong
    kind, an unknown layout, or a checkpoint of another architecture.
    """
    if source not in SOURCES:
        raise CheckpointError(f"source must be one of {sorted(SOURCES)}, got {source!r}")
    state, meta = source_state(path)
    other = next((name for name in SOURCES if name != source and _looks_like(name, state)), None)
    if other is not None and not _looks_like(source, state):
        raise CheckpointError(
            f"{path}: this is the {other} layout ({describe_keys(state)}); "
            f"convert it with source {other}"
        )
    return SOURCES[source](state, meta, Path(path))


def _looks_like(source: str, state: dict[str, Any]) -> bool:
    marker = {"mmseg": "decode_head.", "official": "fusion.stages."}[source]
    return any(k.startswith(marker) for k in state)
