"""trainer.amp / evaluator.amp = auto: bf16 only where the hardware runs it
natively, fp32 elsewhere, and one log line that says which and why."""

from __future__ import annotations

import logging

import pytest
import torch

from ann import speed
from ann.errors import ConfigError
from ann.evaluation.evaluator import Evaluator


@pytest.fixture(params=[True, False], ids=["native", "emulated"])
def native(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Pretends the CPU has (or lacks) AVX-512 BF16 / AMX, as oneDNN reports it."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: request.param)
    return request.param


def test_auto_follows_the_hardware(native: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ann.speed"):
        dtype = speed.amp_dtype("auto", "bf16", "trainer", "cpu")
    assert dtype == (torch.bfloat16 if native else None)
    [line] = [r.getMessage() for r in caplog.records]
    chosen = "bf16" if native else "fp32"
    assert line.startswith(f"trainer precision: {chosen} (trainer.amp=auto: this CPU ")
    assert ("has AVX-512 BF16" in line) == native
    assert ("would be emulated" in line) == (not native)


def test_explicit_bf16_on_emulating_hardware_warns(
    native: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ann.speed"):
        assert speed.amp_dtype(True, "bf16", "trainer", "cpu") == torch.bfloat16
    [record] = caplog.records
    assert (record.levelno == logging.WARNING) == (not native)
    if not native:
        assert "several times slower than fp32 (set trainer.amp=auto or false)" in (
            record.getMessage()
        )


def test_false_is_fp32_everywhere(native: bool) -> None:
    assert speed.amp_dtype(False, "bf16", "trainer", "cpu") is None


@pytest.mark.parametrize(("amp", "dtype"), [("yes", "bf16"), (True, "fp8")])
def test_bad_values_are_one_line(amp: object, dtype: str) -> None:
    with pytest.raises(ConfigError, match=r"^evaluator\.amp"):
        Evaluator(amp=amp, amp_dtype=dtype)


def test_evaluator_decides_per_device_once(native: bool, caplog: pytest.LogCaptureFixture) -> None:
    evaluator = Evaluator(amp="auto")
    with caplog.at_level(logging.INFO, logger="ann.speed"):
        first = evaluator.dtype(torch.device("cpu"))
        assert evaluator.dtype("cpu") is first
    assert first == (torch.bfloat16 if native else None)
    assert len(caplog.records) == 1


def test_demo_and_schema_accept_auto() -> None:
    from ann.config.schema import check_config
    from conftest import compose_cfg

    cfg = compose_cfg(["experiment=demo"])
    assert cfg.trainer.amp == "auto"
    check_config(cfg)
    bad = compose_cfg(["experiment=demo", "trainer.amp=maybe"])
    with pytest.raises(ConfigError, match=r"trainer\.amp='maybe': expected true or false or auto"):
        check_config(bad)
