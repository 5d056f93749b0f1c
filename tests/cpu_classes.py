"""The four CPU classes that decide ``amp=auto`` and the fast path
(ann/speed.py), and pretending to be one: for the precision and fast-path tests."""

from __future__ import annotations

import pytest
import torch

from ann import speed

NONE = dict.fromkeys(
    ("avx2", "avx512", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16"), False
)
# The four CPU classes, as CPUID reports them (the Sapphire Rapids row has
# AVX-512 FP16 too; AMX-FP16 arrived with Granite Rapids).
CLASSES = {
    "AVX2 only": {**NONE, "avx2": True},
    "AVX-512 without BF16": {**NONE, "avx2": True, "avx512": True},
    "AVX-512 BF16": {**NONE, "avx2": True, "avx512": True, "avx512_bf16": True},
    "AMX": {
        **NONE,
        **dict.fromkeys(("avx2", "avx512", "avx512_bf16", "avx512_fp16", "amx_bf16"), True),
    },
}


def pretend(monkeypatch: pytest.MonkeyPatch, flags: dict[str, bool], onednn: bool = True) -> None:
    """Makes this CPU report ``flags``; oneDNN answers ``onednn`` for bf16 and
    fp16 (it says True on every AVX-512 CPU, emulating where the flags lack)."""
    monkeypatch.setattr(speed, "_hardware_flags", lambda: dict(flags))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    for probe in ("_is_mkldnn_bf16_supported", "_is_mkldnn_fp16_supported"):
        monkeypatch.setattr(torch.ops.mkldnn, probe, lambda: onednn)
