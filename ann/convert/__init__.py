"""Published ANN checkpoints into this project's checkpoint format.

``convert(source, path)`` reads an mmsegmentation model-zoo file (``mmseg``)
or the authors' release (``official``, MendelXu/ANN) with ``weights_only=True``
and returns a checkpoint that ``tools/eval.py``, ``tools/infer.py``,
``tools/export.py`` and ``trainer.load_from`` read like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ann.convert.layout import Converted, describe_keys, source_state
from ann.convert.mmseg import from_mmseg
from ann.convert.official import from_official
from ann.errors import CheckpointError, exit_2_on_user_error

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


def convert_file(source: str, src: str | Path, dst: str | Path) -> Converted:
    """Converts ``src`` and writes the checkpoint to ``dst`` atomically."""
    from ann.engine.checkpoint import save_checkpoint

    converted = convert(source, src)
    save_checkpoint(converted.checkpoint(src), dst)
    return converted


@exit_2_on_user_error
def main(argv: list[str] | None = None) -> int:
    """``python tools/convert.py {mmseg,official} INPUT OUTPUT``; 2 on a user error."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="tools/convert.py",
        description="Convert a published ANN checkpoint into this project's format.",
    )
    parser.add_argument("source", choices=sorted(SOURCES), help="layout of INPUT")
    parser.add_argument("input", help="the downloaded .pth file")
    parser.add_argument("output", help="where to write the converted checkpoint")
    args = parser.parse_args(argv)
    done = convert_file(args.source, args.input, args.output)
    aux = f", auxiliary head {done.aux_channels} ch" if done.aux_channels else ""
    print(
        f"wrote {args.output}: ANN ResNet-{done.depth}, {done.num_classes} classes, "
        f"stem {done.stem_channels} ch{aux} ({len(done.model)} tensors)"
    )
    for name in done.experiments:
        print(f"  python tools/eval.py experiment={name} checkpoint={args.output} dataset.root=...")
    if not done.experiments:
        print("  no experiment matches this architecture; override model.* to fit it")
    return 0
