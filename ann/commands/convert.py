"""``tools/convert.py {mmseg,official} INPUT OUTPUT``: a published ANN checkpoint
into this project's checkpoint format."""

from __future__ import annotations

from pathlib import Path

from ann.convert import SOURCES, Converted, convert
from ann.engine.checkpoint import save_checkpoint
from ann.errors import exit_2_on_user_error


def convert_file(source: str, src: str | Path, dst: str | Path) -> Converted:
    """Converts ``src`` and writes the checkpoint to ``dst`` atomically."""
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
