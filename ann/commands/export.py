"""``export_onnx(cfg)``: a checkpoint to ONNX, as tools/export.py runs it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from ann.config.record import write_config
from ann.hub.loading import load_model, open_checkpoint, with_checkpoint_config
from ann.logging_utils import setup_logging
from ann.models.export import export_model

log = logging.getLogger(__name__)


def compare_onnx(
    model: nn.Module, path: str | Path, sizes: list[tuple[int, int]], batch: int = 1
) -> dict[str, float]:
    """Max |onnxruntime - PyTorch| of the logits at each (height, width)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = {}
    gen = torch.Generator().manual_seed(0)
    for h, w in sizes:
        x = torch.randn(batch, 3, h, w, generator=gen)
        with torch.no_grad():
            ref = model.eval()(x)
        (out,) = session.run(["logits"], {"images": x.numpy()})
        diffs[f"{h}x{w}"] = float((torch.from_numpy(out) - ref).abs().max())
    return diffs


def export_onnx(cfg: DictConfig, overrides: Sequence[str] | None = None) -> Path:
    """Loads ``cfg.checkpoint`` into ``cfg.model`` and writes
    ``<output_dir>/<export.filename>``; with ``export.check`` compares
    onnxruntime and PyTorch (at the export size and ``export.check_sizes``)
    and writes export.json. Returns the ONNX path."""
    path, state = open_checkpoint(cfg.checkpoint)  # a file or zoo:NAME
    cfg = with_checkpoint_config(cfg, state, path, overrides)
    out_dir = Path(cfg.output_dir)
    write_config(cfg, out_dir, ("model",))
    setup_logging(out_dir / "export.log", True)
    opts = cfg.export
    model = load_model(cfg.model, state, path)
    path = export_model(
        model,
        out_dir / opts.filename,
        int(opts.height),
        int(opts.width),
        int(opts.batch),
        bool(opts.dynamic),
        int(opts.opset),
    )
    log.info("wrote %s (dynamic=%s, opset %d)", path, opts.dynamic, opts.opset)
    if opts.check:
        sizes = [(int(opts.height), int(opts.width))]
        if opts.dynamic:
            sizes += [(int(h), int(w)) for h, w in opts.check_sizes]
        diffs = compare_onnx(model, path, sizes, int(opts.batch))
        report = {"onnx": str(path), "dynamic": bool(opts.dynamic), "max_abs_diff": diffs}
        (out_dir / "export.json").write_text(json.dumps(report, indent=2) + "\n")
        log.info("onnxruntime vs PyTorch, max |diff| of the logits: %s", diffs)
        worst = max(diffs.values())
        if worst > float(opts.atol):
            raise RuntimeError(
                f"ONNX export differs from PyTorch by {worst:.2e} > export.atol={opts.atol}"
            )
    return path
