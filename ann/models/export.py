"""A model to ONNX: :func:`export_model`, used by tools/export.py and by the
ONNX Runtime inference backend (:mod:`ann.evaluation.fast`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ann.errors import ConfigError


def export_model(
    model: nn.Module,
    path: str | Path,
    height: int,
    width: int,
    batch: int = 1,
    dynamic: bool = False,
    opset: int = 18,
    optimize: bool = True,
) -> Path:
    """Writes ``model`` (eval mode, (B, 3, H, W) -> logits (B, K, H, W)) to an
    ONNX file with input ``images`` and output ``logits``.

    With ``dynamic`` the batch, height and width are symbolic. That is exact
    at every size because the pyramid pooling computes its bins from the
    runtime shape (``ann.models.heads.attention.pyramid_pool``), never from
    the trace size. ``optimize`` runs onnxscript's graph optimiser (slower
    export, leaner graph). Returns the path.
    """
    if opset < 17:
        raise ConfigError(f"export.opset must be >= 17, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    # torch.export specialises dimensions of size 1, so a dynamic batch is traced at 2.
    example = torch.randn(max(batch, 2) if dynamic else batch, 3, height, width)
    dynamic_shapes = None
    if dynamic:
        dim = torch.export.Dim.DYNAMIC
        dynamic_shapes = ({0: dim, 2: dim, 3: dim},)  # positional: any forward arg name
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["images"],
            output_names=["logits"],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
            optimize=optimize,
        )
        program.save(str(path))
    return path


__all__ = ["export_model"]
