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
import os
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


# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) from low to high; each caps what
# oneDNN dispatches to, whatever the CPU has.
ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX10_1_512",
    "AVX512_CORE_FP16",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16",
)
# The lowest ISA at which each feature is used (AVX512_CORE_FP16 and
# AVX512_CORE_AMX are oneDNN's older names for AVX10_1_512 and its AMX level).
_FEATURE_ISA = {
    "avx2": "AVX2",
    "avx512": "AVX512_CORE",
    "avx512_bf16": "AVX512_CORE_BF16",
    "avx512_fp16": "AVX10_1_512",
    "amx_bf16": "AVX10_1_512_AMX",
    "amx_fp16": "AVX10_1_512_AMX_FP16",
}


def _hardware_flags() -> dict[str, bool]:
    """The CPU's own feature flags, as cpuinfo reads them (CPUID), for the
    features the precision and layout defaults depend on."""
    try:
        caps = torch._C._cpu._get_cpu_capability()
    except AttributeError:  # older torch: only the per-feature probes
        cpu = torch.cpu
        return {
            "avx2": cpu._is_avx2_supported(),
            "avx512": cpu._is_avx512_supported(),
            "avx512_bf16": cpu._is_avx512_bf16_supported(),
            "avx512_fp16": False,
            "amx_bf16": cpu._is_amx_tile_supported(),
            "amx_fp16": getattr(cpu, "_is_amx_fp16_supported", lambda: False)(),
        }
    avx512 = all(caps.get(f"avx512_{k}", False) for k in ("f", "bw", "vl", "dq"))
    return {
        "avx2": bool(caps.get("avx2")),
        "avx512": avx512,
        "avx512_bf16": avx512 and bool(caps.get("avx512_bf16")),
        "avx512_fp16": avx512 and bool(caps.get("avx512_fp16")),
        "amx_bf16": bool(caps.get("amx_tile") and caps.get("amx_bf16")),
        "amx_fp16": bool(caps.get("amx_tile") and caps.get("amx_fp16")),
    }


def cpu_flags() -> dict[str, bool]:
    """The CPU features that PyTorch will actually use: the hardware's flags,
    capped by ``ONEDNN_MAX_CPU_ISA`` where set: oneDNN runs the convolutions,
    and that variable is its documented way to run as a lesser CPU class
    (``AVX2``, ``AVX512_CORE_VNNI``: an AVX-512 CPU without BF16)."""
    flags = _hardware_flags()
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if isa in ONEDNN_ISAS:
        rank = ONEDNN_ISAS.index(isa)
        for feature, lowest in _FEATURE_ISA.items():
            flags[feature] = flags[feature] and rank >= ONEDNN_ISAS.index(lowest)
    return flags


def cpu_class(flags: dict[str, bool] | None = None) -> str:
    """The CPU class the speed defaults are chosen by: ``"AMX"``,
    ``"AVX-512 BF16"``, ``"AVX-512 without BF16"``, ``"AVX2 only"`` or
    ``"no AVX2"``."""
    flags = cpu_flags() if flags is None else flags
    if flags["amx_bf16"]:
        return "AMX"
    if flags["avx512_bf16"]:
        return "AVX-512 BF16"
    if flags["avx512"]:
        return "AVX-512 without BF16"
    return "AVX2 only" if flags["avx2"] else "no AVX2"


def _cpu_native(dtype: torch.dtype) -> tuple[bool, str]:
    """Whether this CPU runs ``dtype`` natively, and the flags that decided.

    The CPU's own flags decide: oneDNN reports bf16 "supported" on every
    AVX-512 CPU because it emulates it there (1.8x slower than fp32 on an Ice
    Lake). oneDNN's answer is a second condition, so that its own switches can
    still turn the low precision off."""
    flags = cpu_flags()
    if dtype == torch.bfloat16:
        name, probe = "bf16", "_is_mkldnn_bf16_supported"
        units = [("AMX-BF16", flags["amx_bf16"]), ("AVX-512 BF16", flags["avx512_bf16"])]
    else:
        name, probe = "fp16", "_is_mkldnn_fp16_supported"
        units = [("AMX-FP16", flags["amx_fp16"]), ("AVX-512 FP16", flags["avx512_fp16"])]
    has = [unit for unit, present in units if present]
    if not has:
        return False, f"{_lacking(flags, name)}; {name} would be emulated"
    if not getattr(torch.ops.mkldnn, probe)():
        return False, f"{has[0]}, but oneDNN reports no {name} support; {name} would be emulated"
    return True, has[0]


def _lacking(flags: dict[str, bool], name: str) -> str:
    """'AVX-512 without BF16' and the like: the class, said for ``name``."""
    if flags["avx512"]:
        return f"AVX-512 without {name.upper()}"
    return "AVX2 only" if flags["avx2"] else "no AVX2"


def native_support(device: torch.device | str, dtype: torch.dtype) -> tuple[bool, str]:
    """Whether ``device`` computes ``dtype`` (bf16 / fp16) in hardware, and why.

    On a CPU without AVX-512 BF16 / AMX (AVX2-only laptops and CI runners,
    AVX-512 servers before Cooper Lake / Sapphire Rapids), PyTorch emulates
    bf16 convolutions in software: slower than fp32, not faster. The reason
    names the CPU flags that decided, e.g. ``"AVX-512 without BF16; bf16
    would be emulated"`` or ``"AMX-BF16"``.
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
        return _cpu_native(dtype)
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
            "%s precision: %s autocast as asked, but %s: expect it to be slower than fp32,"
            " up to several times (set %s.amp=auto or false)",
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


# CPU classes where channels_last (NHWC) pays in fp32, from the side-by-side
# figures of docs/performance.md: 1.25x training step with AVX-512,
# 0.96x with AVX2 only (oneDNN's blocked NCHW kernels are as fast there).
CHANNELS_LAST_CLASSES = ("AMX", "AVX-512 BF16", "AVX-512 without BF16")


def channels_last_choice(
    value: bool | str, key: str = "trainer", device: torch.device | str = "cpu"
) -> bool:
    """``{key}.channels_last``: true, false or ``"auto"``, which is true on a
    CPU of :data:`CHANNELS_LAST_CLASSES` (by :func:`cpu_class`, so
    ``ONEDNN_MAX_CPU_ISA`` counts) and false elsewhere, GPUs included (not
    measured there). Logs an ``auto`` choice and its reason in one line."""
    if value not in (True, False, "auto"):
        raise ConfigError(f"{key}.channels_last must be true, false or auto, got {value!r}")
    if value != "auto":
        return bool(value)
    kind = torch.device(device).type
    klass = cpu_class() if kind == "cpu" else f"{kind} device"
    chosen = klass in CHANNELS_LAST_CLASSES
    log.info(
        "%s layout: %s (%s.channels_last=auto: %s)",
        key,
        "channels_last" if chosen else "NCHW",
        key,
        klass,
    )
    return chosen


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
    "CHANNELS_LAST_CLASSES",
    "COMPILE_MODES",
    "channels_last_choice",
    "ONEDNN_ISAS",
    "cpu_class",
    "cpu_flags",
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
