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


def native_support(device: torch.device | str, dtype: torch.dtype) -> tuple[bool, str]:
    """Whether ``device`` computes ``dtype`` (bf16 / fp16) in hardware, and why.

    On a CPU without AVX-512 BF16 / AMX (most laptops, CI runners and cloud
    VMs), PyTorch emulates bf16 convolutions in software: several times slower
    than fp32, not faster. oneDNN decides which kernels run, so its own answer
    is the one that counts (``ONEDNN_MAX_CPU_ISA=AVX2`` makes it say no).
    """
    name = "bf16" if dtype == torch.bfloat16 else "fp16"
    device = torch.device(device)
    if device.type == "cuda":
        if dtype == torch.float16:
            return True, "CUDA runs fp16 natively"
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no including_emulation argument
            native = torch.cuda.is_bf16_supported()
        gpu = torch.cuda.get_device_name(device)
        return native, f"{gpu} {'runs' if native else 'does not run'} bf16 natively"
    if device.type == "cpu":
        probe = {
            torch.bfloat16: "_is_mkldnn_bf16_supported",
            torch.float16: "_is_mkldnn_fp16_supported",
        }[dtype]
        native = bool(getattr(torch.ops.mkldnn, probe)())
        isa = "AVX-512 BF16 / AMX" if dtype == torch.bfloat16 else "AVX-512 FP16 / AMX-FP16"
        if native:
            return True, f"this CPU has {isa}"
        return False, f"this CPU lacks {isa}, so {name} would be emulated"
    return False, f"no native {name} check for device type {device.type!r}"


def amp_dtype(
    amp: bool | str,
    dtype: str,
    key: str = "trainer",
    device: torch.device | str = "cpu",
) -> torch.dtype | None:
    """The autocast dtype for the ``{key}.amp`` / ``{key}.amp_dtype`` options on
    ``device``; None for fp32. Logs the choice and its reason in one line.

    ``amp``: false (fp32), true (``dtype`` even if emulated: warns), or
    ``"auto"`` (``dtype`` where the device runs it natively, else fp32).
    """
    if amp not in (True, False, "auto"):
        raise ConfigError(f"{key}.amp must be true, false or auto, got {amp!r}")
    if dtype not in ("bf16", "fp16"):
        raise ConfigError(f"{key}.amp_dtype must be one of bf16, fp16, got {dtype!r}")
    if amp is False:
        log.info("%s precision: fp32 (%s.amp=false)", key, key)
        return None
    native, why = native_support(device, PRECISIONS[dtype])
    if amp == "auto":
        chosen = dtype if native else "fp32"
        log.info("%s precision: %s (%s.amp=auto: %s)", key, chosen, key, why)
        return PRECISIONS[dtype] if native else None
    if native:
        log.info("%s precision: %s autocast (%s.amp=true: %s)", key, dtype, key, why)
    else:
        log.warning(
            "%s precision: %s autocast although %s; expect it to be several times slower"
            " than fp32 (set %s.amp=auto or false)",
            key,
            dtype,
            why,
            key,
        )
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
    :func:`unwrap` removes), so checkpoints are unchanged.
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


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside ``torch.compile`` and DistributedDataParallel
    wrappers (or the model itself): the one whose state_dict is saved."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


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
    "native_support",
    "PRECISIONS",
    "amp_dtype",
    "autocast",
    "configure_backends",
    "forward_fn",
    "memory_format",
    "prepare_model",
    "to_input",
    "unwrap",
]
