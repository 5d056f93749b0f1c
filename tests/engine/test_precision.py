"""trainer.amp / evaluator.amp = auto: bf16 only where the CPU's own flags say
it runs natively (AVX-512 BF16 or AMX), fp32 elsewhere, and one log line that
names the flags that decided. Each CPU class is pretended through the flags."""

from __future__ import annotations

import logging

import pytest
import torch
from cpu_classes import CLASSES, NONE, pretend

from ann import speed
from ann.errors import ConfigError
from ann.evaluation.evaluator import Evaluator
from helpers import compose_cfg

NATIVE_BF16 = {"AVX2 only": False, "AVX-512 without BF16": False, "AVX-512 BF16": True, "AMX": True}
REASON = {
    "AVX2 only": "AVX2 only; bf16 would be emulated",
    "AVX-512 without BF16": "AVX-512 without BF16; bf16 would be emulated",
    "AVX-512 BF16": "AVX-512 BF16",
    "AMX": "AMX-BF16",
}


@pytest.fixture(params=list(CLASSES))
def cpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Pretends each CPU class in turn; the class's name."""
    pretend(monkeypatch, CLASSES[request.param], onednn=request.param != "AVX2 only")
    return request.param


def test_hardware_flags_are_read() -> None:
    flags = speed.cpu_flags()
    assert set(flags) == set(NONE) and all(isinstance(v, bool) for v in flags.values())
    assert speed.cpu_class() in CLASSES or speed.cpu_class() == "no AVX2"


def test_class_from_the_cpu_flags(cpu: str) -> None:
    assert speed.cpu_class() == cpu


def test_auto_follows_the_cpu_flags(cpu: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ann.speed"):
        dtype = speed.amp_dtype("auto", "bf16", "trainer", "cpu")
    native = NATIVE_BF16[cpu]
    assert dtype == (torch.bfloat16 if native else None)
    [line] = [r.getMessage() for r in caplog.records]
    chosen = "bf16" if native else "fp32"
    assert line == f"trainer precision: {chosen} (trainer.amp=auto: {REASON[cpu]})"


def test_fp16_needs_avx512_fp16_or_amx_fp16(cpu: str) -> None:
    native, why = speed.native_support("cpu", torch.float16)
    assert native == (cpu == "AMX")  # the AMX row has AVX-512 FP16
    assert why == ("AVX-512 FP16" if native else f"{why.split(';')[0]}; fp16 would be emulated")


def test_explicit_bf16_on_emulating_hardware_warns(
    cpu: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ann.speed"):
        assert speed.amp_dtype(True, "bf16", "trainer", "cpu") == torch.bfloat16
    [record] = caplog.records
    native = NATIVE_BF16[cpu]
    assert (record.levelno == logging.WARNING) == (not native)
    assert "\n" not in record.getMessage()
    if not native:
        assert f"but {REASON[cpu]}: expect it to be slower than fp32" in record.getMessage()
        assert record.getMessage().endswith("(set trainer.amp=auto or false)")


def test_false_is_fp32_everywhere(cpu: str) -> None:
    assert speed.amp_dtype(False, "bf16", "trainer", "cpu") is None


def test_onednn_can_still_say_no(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flags say AVX-512 BF16, oneDNN says no (its own limits): fp32."""
    pretend(monkeypatch, CLASSES["AVX-512 BF16"], onednn=False)
    native, why = speed.native_support("cpu", torch.bfloat16)
    assert not native and why.startswith("AVX-512 BF16, but oneDNN reports no bf16 support")


@pytest.mark.parametrize(
    ("isa", "expected"),
    [
        ("AVX2", "AVX2 only"),
        ("avx512_core_vnni", "AVX-512 without BF16"),
        ("AVX512_CORE_BF16", "AVX-512 BF16"),
        ("AVX10_1_512_AMX", "AMX"),
        ("ALL", "AMX"),
    ],
)
def test_onednn_isa_limit_caps_the_class(
    monkeypatch: pytest.MonkeyPatch, isa: str, expected: str
) -> None:
    """ONEDNN_MAX_CPU_ISA runs an AMX machine as a lesser class (and measures one)."""
    pretend(monkeypatch, CLASSES["AMX"])
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert speed.cpu_class() == expected
    assert speed.native_support("cpu", torch.bfloat16)[0] == NATIVE_BF16[expected]


@pytest.mark.parametrize(("amp", "dtype"), [("yes", "bf16"), (True, "fp8")])
def test_bad_values_are_one_line(amp: object, dtype: str) -> None:
    with pytest.raises(ConfigError, match=r"^evaluator\.amp"):
        Evaluator(amp=amp, amp_dtype=dtype)


def test_evaluator_decides_per_device_once(cpu: str, caplog: pytest.LogCaptureFixture) -> None:
    evaluator = Evaluator(amp="auto")
    with caplog.at_level(logging.INFO, logger="ann.speed"):
        first = evaluator.dtype(torch.device("cpu"))
        assert evaluator.dtype("cpu") is first
    assert first == (torch.bfloat16 if NATIVE_BF16[cpu] else None)
    assert len(caplog.records) == 1


def test_demo_and_schema_accept_auto() -> None:
    from ann.config.schema import check_config

    cfg = compose_cfg(["experiment=demo"])
    assert cfg.trainer.amp == "auto"
    check_config(cfg)
    bad = compose_cfg(["experiment=demo", "trainer.amp=maybe"])
    with pytest.raises(ConfigError, match=r"trainer\.amp='maybe': expected true or false or auto"):
        check_config(bad)
