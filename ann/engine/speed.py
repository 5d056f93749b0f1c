"""Speed options shared by training, evaluation, inference and the benchmarks.

Each option changes how the same model is computed, not what it computes
(docs/performance.md gives the tolerances the tests hold them to):

- precision: ``fp32``, or autocast to ``bf16`` / ``fp16`` (fp16 training
  adds a GradScaler, which the trainer owns);
- memory layout: ``channels_last`` (NHWC) for the model and its inputs;
- ``torch.compile`` with a mode;
- CUDA backend flags: cuDNN's autotuner and TF32 for matmuls and convs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from ann.errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def amp_dtype(amp: bool, dtype: str, key: str = "trainer.amp_dtype") -> torch.dtype | None:
    """The autocast dtype for ``amp``/``dtype`` options, None for fp32."""
    if not amp:
        return None
    if dtype not in ("bf16", "fp16"):
        raise ConfigError(f"{key} must be one of bf16, fp16, got {dtype!r}")
    return PRECISIONS[dtype]


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` on ``device``'s type with ``dtype``; disabled for None (fp32)."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def configure_backends(
    device: torch.device | str, cudnn_benchmark: bool = True, tf32: bool = True
) -> None:
    """Process-wide CUDA flags; nothing to do on the CPU.

    ``cudnn_benchmark`` lets cuDNN time its convolution algorithms for each new
    input shape (training crops have one shape, so it pays once); ``tf32``
    runs fp32 matmuls and convolutions on TF32 tensor cores (Ampere and
    newer; 10-bit mantissa products, fp32 accumulation).
    """
    if torch.device(device).type != "cuda":
        return
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)


def memory_format(channels_last: bool) -> torch.memory_format:
    """``torch.channels_last`` or ``torch.contiguous_format``."""
    return torch.channels_last if channels_last else torch.contiguous_format


def prepare_model(
    model: nn.Module,
    channels_last: bool = False,
    compile: bool = False,
    compile_mode: str = "default",
    key: str = "trainer",
) -> nn.Module:
    """Puts ``model`` in the requested layout; returns it, compiled if asked.

    The compiled module (``torch.compile``'s ``OptimizedModule``) shares the
    parameters and state_dict keys of ``model`` (under ``_orig_mod``, which
    :func:`ann.engine.evaluator.unwrap` removes), so checkpoints are unchanged.
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if not compile:
        return model
    if compile_mode not in COMPILE_MODES:
        raise ConfigError(
            f"{key}.compile_mode must be one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}"
        )
    log.info("torch.compile(mode=%s): the first iterations compile the model", compile_mode)
    return torch.compile(model, mode=compile_mode)


def to_input(images: Tensor, channels_last: bool) -> Tensor:
    """A (B, 3, H, W) batch in the model's memory layout (a no-op when it is)."""
    return images.contiguous(memory_format=memory_format(channels_last))


def forward_fn(
    model: nn.Module, dtype: torch.dtype | None, channels_last: bool
) -> Callable[[Tensor], Tensor]:
    """``model`` as a function of (B, 3, H, W) images returning fp32 (B, K, H, W)
    logits, run under autocast to ``dtype`` (None: fp32) in the given layout.

    Test-time averaging and softmax then happen in fp32 whatever the precision.
    """
    if dtype is None and not channels_last:
        return model

    def forward(images: Tensor) -> Tensor:
        with autocast(images.device, dtype):
            return model(to_input(images, channels_last)).float()

    return forward


__all__ = [
    "COMPILE_MODES",
    "PRECISIONS",
    "amp_dtype",
    "autocast",
    "configure_backends",
    "forward_fn",
    "memory_format",
    "prepare_model",
    "to_input",
]
