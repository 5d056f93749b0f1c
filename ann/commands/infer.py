"""``infer(cfg)``: a checkpoint on images from disk, as tools/infer.py runs it."""

from __future__ import annotations

import glob
import itertools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from ann.api import Segmenter
from ann.config.record import write_config
from ann.config.schema import check_config
from ann.data.base import read_image
from ann.data.folder import IMAGE_SUFFIXES
from ann.data.video import VideoInfo, VideoWriter, is_video, read_frames, video_info
from ann.errors import ConfigError, DataError
from ann.evaluation.predictions import PredictionWriter, save_index_png
from ann.hub.loading import load_model, open_checkpoint, with_checkpoint_config
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
def infer(cfg: DictConfig, overrides: Sequence[str] | None = None) -> list[Path]:
    """Predicts ``cfg.input`` with ``cfg.checkpoint`` (a file or ``zoo:NAME``)
    and the configured evaluator's mode, scales and flip. Images: writes
    ``predictions/masks/{name}.png`` (palette PNGs whose pixel values are
    class indices) and ``predictions/overlays/{name}.png`` (image | prediction
    overlay) and returns the mask paths. A video: see :func:`infer_video`.
    Everything goes under ``cfg.output_dir``. ``overrides``: the command line
    that composed ``cfg`` (tools/infer.py); without ``experiment=`` in it the
    checkpoint's own config rebuilds the model."""
    check_config(cfg, ("model", "evaluator"))
    if cfg.get("input") is None:
        raise ConfigError("input: missing (input=IMAGE, input=FOLDER, input='GLOB' or input=VIDEO)")
    video = is_video(str(cfg.input)) and Path(str(cfg.input)).is_file()
    inputs = [] if video else collect_inputs(str(cfg.input))
    # Cheap checks first: a bad key or checkpoint fails in seconds. The
    # checkpoint's own config fills in the model when no experiment is named.
    path, state = open_checkpoint(cfg.checkpoint)
    cfg = with_checkpoint_config(cfg, state, path, overrides)
    out_dir = Path(cfg.output_dir)
    write_config(cfg, out_dir, ("model", "evaluator"))
    setup_logging(out_dir / "infer.log")
    evaluator = instantiate(cfg.evaluator)
    evaluator.use_fast(cfg.get("fast"), cfg.get("backend"))  # the shorthands fast=, backend=
    device = torch.device(cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    # The Python API's predictor, so that both give the same masks.
    seg = Segmenter(cfg, load_model(cfg.model, state, path, device), evaluator, device)
    progress = None if cfg.get("progress", True) else True  # tqdm: None = only on a terminal
    if video:
        return [infer_video(seg, Path(str(cfg.input)), out_dir / "predictions", cfg, progress)]
    writer = PredictionWriter(
        "color", out_dir / "predictions", seg.classes, seg.palette, alpha=float(cfg.overlay_alpha)
    )
    written = []
    for image_path, name in tqdm(inputs, desc="infer", disable=progress):
        rgb = read_image(image_path)
        written.append(writer.write(name, seg.predict(rgb).astype(np.uint8), rgb))
    log.info(
        "wrote %d masks to %s and overlays to %s",
        len(written),
        out_dir / "predictions" / "masks",
        out_dir / "predictions" / "overlays",
    )
    return written


def infer_video(
    seg: Segmenter, video: Path, out_dir: Path, cfg: DictConfig, progress: bool | None = None
) -> Path:
    """Writes ``out_dir/overlays/{stem}{suffix}``: every frame of ``video``
    with its prediction over it (``cfg.overlay_alpha``), at the input's frame
    count, size and frame rate; with ``cfg.video_masks`` also
    ``out_dir/masks/{stem}/{frame:06d}.png`` (palette PNGs of class ids).
    ``cfg.batch_size`` frames go through the model together. A frame that
    fails to decode is counted, logged and stands in as the previous
    overlay (black before the first), so the timing is kept. Returns the
    video's path."""
    info = video_info(video)
    target = out_dir / "overlays" / f"{video.stem}{video.suffix.lower()}"
    mask_dir = out_dir / "masks" / video.stem if cfg.get("video_masks") else None
    alpha, batch = float(cfg.overlay_alpha), max(int(cfg.get("batch_size") or 1), 1)
    last = np.zeros((info.height, info.width, 3), np.uint8)
    failed: list[int] = []
    frames = read_frames(video, info.frames)
    with VideoWriter(target, info.fps, info.width, info.height) as writer:
        bar = tqdm(total=info.frames, desc="infer video", unit="frame", disable=progress)
        while chunk := list(itertools.islice(frames, batch)):
            good = [f for f in chunk if f is not None]
            masks = iter(seg.predict(good, batch_size=batch) if good else [])
            for frame in chunk:
                if frame is None:
                    failed.append(writer.frames)
                else:
                    mask = next(masks)
                    last = seg.overlay(frame, mask, alpha)
                    if mask_dir is not None:
                        name = f"{writer.frames:06d}.png"
                        save_index_png(mask_dir / name, mask.astype(np.uint8), seg.palette)
                writer.write(last)
            bar.update(len(chunk))
        bar.close()
    _log_video(video, target, writer.frames, info, failed, mask_dir)
    return target


def _log_video(
    video: Path,
    target: Path,
    frames: int,
    info: VideoInfo,
    failed: list[int],
    mask_dir: Path | None,
) -> None:
    """Logs what :func:`infer_video` wrote (``frames`` frames of the input's
    ``info``) and the indices of the frames that ``failed`` to decode."""
    if failed:
        log.warning(
            "%s: %d frame(s) failed to decode (first: %d); each repeats the previous overlay",
            video,
            len(failed),
            failed[0],
        )
    log.info(
        "wrote %s (%d frames, %.3g fps, %dx%d)",
        target,
        frames,
        info.fps,
        info.width,
        info.height,
    )
    if mask_dir is not None:
        log.info("wrote per-frame masks to %s", mask_dir)
