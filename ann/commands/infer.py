"""``infer(cfg)``: a checkpoint on images from disk, as tools/infer.py runs it."""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ann.api import Segmenter, load_model
from ann.config.schema import check_config
from ann.data.base import read_image
from ann.data.folder import IMAGE_SUFFIXES
from ann.engine.checkpoint import load_checkpoint
from ann.errors import ConfigError, DataError
from ann.evaluation.predictions import PredictionWriter
from ann.logging_utils import setup_logging

log = logging.getLogger(__name__)


def collect_inputs(spec: str) -> list[tuple[Path, str]]:
    """Images named by ``spec`` — a file, a folder (searched recursively) or a
    glob pattern — as (path, name) pairs; ``name`` is the path relative to the
    folder (or to the matches' common folder) without its suffix, so outputs
    keep sub-folders and never collide."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [(path, path.stem)]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        base = path
    else:
        files = sorted(
            Path(p)
            for p in glob.glob(str(path), recursive=True)
            if Path(p).suffix.lower() in IMAGE_SUFFIXES and Path(p).is_file()
        )
        base = Path(os.path.commonpath([str(p.parent) for p in files])) if files else path
    if not files:
        raise DataError(
            f"input={spec}: no image file, folder of images or glob match "
            f"(expected suffixes {', '.join(IMAGE_SUFFIXES)})"
        )
    return [(p, str(p.relative_to(base).with_suffix(""))) for p in files]


@torch.no_grad()
def infer(cfg: DictConfig) -> list[Path]:
    """Predicts ``cfg.input`` with ``cfg.checkpoint`` and the configured
    evaluator's mode, scales and flip; writes ``predictions/masks/{name}.png``
    (palette PNGs whose pixel values are class indices) and
    ``predictions/overlays/{name}.png`` (image | prediction overlay) under
    ``cfg.output_dir``. Returns the mask paths."""
    check_config(cfg, ("model", "evaluator"))
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    setup_logging(out_dir / "infer.log")
    if cfg.get("input") is None:
        raise ConfigError("input: missing (input=IMAGE, input=FOLDER or input='GLOB')")
    inputs = collect_inputs(str(cfg.input))
    # Cheap checks first: a bad checkpoint or evaluator key fails in seconds.
    state = load_checkpoint(cfg.checkpoint)
    evaluator = instantiate(cfg.evaluator)
    evaluator.use_fast(cfg.get("fast"), cfg.get("backend"))  # the shorthands fast=, backend=
    device = torch.device(cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_model(cfg.model, state, cfg.checkpoint, device)
    # The Python API's predictor, so that both give the same masks.
    seg = Segmenter(cfg, model, evaluator, device)
    writer = PredictionWriter(
        "color", out_dir / "predictions", seg.classes, seg.palette, alpha=float(cfg.overlay_alpha)
    )
    written = []
    for path, name in tqdm(inputs, desc="infer", disable=not cfg.get("progress", True)):
        rgb = read_image(path)
        written.append(writer.write(name, seg.predict(rgb).astype(np.uint8), rgb))
    log.info(
        "wrote %d masks to %s and overlays to %s",
        len(written),
        out_dir / "predictions" / "masks",
        out_dir / "predictions" / "overlays",
    )
    return written
