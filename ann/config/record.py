"""The one function that writes a run folder's ``config.yaml``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ann import dist
from ann.config.schema import check_config


def write_config(cfg: DictConfig, out_dir: Path, groups: Sequence[str] = ()) -> Path:
    """Checks ``groups`` of ``cfg`` against the schema, then (main process
    only) creates ``out_dir`` and writes the resolved config to
    ``out_dir/config.yaml`` through a temporary file and a rename, so that a
    reader never sees half a file. Returns the path."""
    if groups:
        check_config(cfg, tuple(groups))
    path = out_dir / "config.yaml"
    if dist.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".config.yaml.tmp")
        tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
        tmp.replace(path)
    return path


__all__ = ["write_config"]
