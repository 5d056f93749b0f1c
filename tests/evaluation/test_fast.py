"""The inference fast path (ann/evaluation/fast.py): every path's scores equal
eager fp32's to 1e-4 relative (whole, sliding window, multi-scale + flip), the
trained module is never changed, and ``fast`` follows the CPU class."""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest
import torch
from cpu_classes import CLASSES, pretend
from reference.weights import randomise
from torch import nn

from ann import Segmenter, speed
from ann.errors import ConfigError
from ann.evaluation.evaluator import Evaluator
from ann.evaluation.fast import FAST_PLAN, fast_forward, fast_plan, fold_batchnorm

TOL = 1e-4
# Small on purpose: the fast tier's budget (the 1024x2048 check is integration).
GEOMETRY = {
    "whole": dict(mode="whole", average="logits"),
    "slide": dict(mode="slide", crop_size=(48, 48), stride=(32, 32), average="logits"),
    "ms_flip": dict(mode="whole", scales=(0.75, 1.0, 1.25), flip=True, average="logits"),
}


def rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).abs().max() / ref.abs().max())


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """The demo's ANN with random weights and BN statistics (folding a BN at
    its initial statistics would be a near no-op and prove little)."""
    seg = Segmenter.from_config("demo", device="cpu")
    return randomise(seg.model, seed=3).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 61, 83, generator=torch.Generator().manual_seed(0))


def test_fold_batchnorm_folds_every_bn_and_leaves_the_model_alone(
    model: nn.Module, image: torch.Tensor
) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model, image)
    # The attention blocks fold their own BNs into their GEMMs in eval mode
    # (attention.bn_fold); the backbone's and the bottleneck's are folded here.
    assert [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not [m for m in folded.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert isinstance(folded.decode_head.bottleneck[1], nn.Identity)
    with torch.no_grad():
        assert rel(folded(image), model(image)) < TOL
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fold_keeps_a_bn_whose_conv_output_is_read_elsewhere() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn, self.act = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + self.act(y)  # the conv's raw output is read by the ReLU too

    net = randomise(Branchy()).eval()
    x = torch.randn(2, 3, 9, 9)
    folded = fold_batchnorm(net, x)
    assert isinstance(folded.bn, nn.BatchNorm2d)
    with torch.no_grad():
        assert torch.equal(folded(x), net(x))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("geometry", list(GEOMETRY))
def test_torch_fast_path_scores_equal_eager(
    model: nn.Module,
    image: torch.Tensor,
    geometry: str,
    channels_last: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pretend(monkeypatch, CLASSES["AVX2 only"])
    monkeypatch.setitem(FAST_PLAN, "AVX2 only", (channels_last, "torch"))
    ref = Evaluator(**GEOMETRY[geometry]).predict(model, image, (61, 83))
    out = Evaluator(**GEOMETRY[geometry], fast=True).predict(model, image, (61, 83))
    assert out.dtype == torch.float32 and out.shape == ref.shape == (1, 5, 61, 83)
    assert rel(out, ref) < TOL


@pytest.mark.slow  # the export alone takes 20-50 s on 2 cores; 1024x2048 is integration
@pytest.mark.timeout(900)
def test_onnxruntime_backend_scores_equal_eager(model: nn.Module, image: torch.Tensor) -> None:
    pytest.importorskip("onnxruntime")
    forward = fast_forward(model, "cpu", backend="onnxruntime")
    for geometry, options in GEOMETRY.items():
        ev = Evaluator(**options, backend="onnxruntime")
        ev._prepared = (model, forward)  # one export for the three geometries
        ref = Evaluator(**options).predict(model, image, (61, 83))
        assert rel(ev.predict(model, image, (61, 83)), ref) < TOL, geometry


def test_segmenter_fast_predicts_what_eager_does(image: torch.Tensor) -> None:
    eager = Segmenter.from_config("demo", device="cpu", overrides=["evaluator.amp=false"])
    randomise(eager.model, seed=3)
    quick = Segmenter(eager.config, eager.model, Evaluator(fast=True, backend="torch"), "cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    assert rel(quick.scores(rgb), eager.scores(rgb)) < TOL
    assert quick.evaluator._prepared is not None and quick.evaluator._prepared[0] is eager.model


# What fast=true and trainer.channels_last=auto pick per CPU class.
CHANNELS_LAST = {
    "AMX": True,
    "AVX-512 BF16": True,
    "AVX-512 without BF16": True,
    "AVX2 only": False,
}
BACKEND = {k: "onnxruntime" if v else "torch" for k, v in CHANNELS_LAST.items()}


@pytest.mark.parametrize("klass", list(CLASSES))
def test_fast_and_channels_last_auto_follow_the_cpu_class(
    klass: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pretend(monkeypatch, CLASSES[klass])
    chosen_cl, backend, why = fast_plan("cpu", None)
    assert (chosen_cl, backend) == (CHANNELS_LAST[klass], BACKEND[klass]) and klass in why
    assert fast_plan("cpu", "torch")[1] == "torch"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no onnxruntime
    assert fast_plan("cpu", None)[1] == "torch"
    with caplog.at_level(logging.INFO, logger="ann.speed"):
        assert speed.channels_last_choice("auto", "trainer", "cpu") is CHANNELS_LAST[klass]
    layout = "channels_last" if CHANNELS_LAST[klass] else "NCHW"
    assert caplog.messages == [f"trainer layout: {layout} (trainer.channels_last=auto: {klass})"]
    assert speed.channels_last_choice(False) is False and speed.channels_last_choice(True)


def test_an_isa_limit_turns_channels_last_off(monkeypatch: pytest.MonkeyPatch) -> None:
    pretend(monkeypatch, CLASSES["AMX"])
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not speed.channels_last_choice("auto") and not fast_plan("cpu", None)[0]


def test_build_training_resolves_channels_last_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    from ann.engine.build import build_training

    pretend(monkeypatch, CLASSES["AVX-512 without BF16"])
    seg = Segmenter.from_config("demo", overrides=["trainer.amp=false"], device="cpu")
    training = build_training(seg.config, seg.model, torch.device("cpu"))
    assert training.channels_last and training.model.backbone.stem[0].weight.is_contiguous(
        memory_format=torch.channels_last
    )


def test_bad_backend_is_one_line() -> None:
    with pytest.raises(ConfigError, match="evaluator.backend"):
        Evaluator(backend="tensorrt")
    with pytest.raises(ConfigError, match="trainer.channels_last"):
        speed.channels_last_choice("yes")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_inductor_backend_scores_equal_eager(model: nn.Module, image: torch.Tensor) -> None:
    ref = Evaluator().predict(model, image, (61, 83))
    out = Evaluator(backend="inductor").predict(model, image, (61, 83))
    assert rel(out, ref) < TOL


@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_fast_paths_at_the_recipe_size() -> None:
    """ANN R-50 at 1024x2048, whole and sliding 769x769 windows at stride 513:
    the folded channels_last copy and ONNX Runtime against eager fp32."""
    pytest.importorskip("onnxruntime")
    seg = Segmenter.from_config("cityscapes_ann", device="cpu")
    model = randomise(seg.model, seed=5).eval()
    image = torch.randn(1, 3, 1024, 2048, generator=torch.Generator().manual_seed(1))
    folded = fast_forward(model, "cpu", backend="torch")  # fold + the class's layout
    session = fast_forward(model, "cpu", backend="onnxruntime")
    for options in (
        dict(mode="whole", average="logits"),
        dict(mode="slide", crop_size=(769, 769), stride=(513, 513), average="logits"),
    ):
        ref = Evaluator(**options).predict(model, image, (1024, 2048))
        for name, forward in (("torch", folded), ("onnxruntime", session)):
            ev = Evaluator(**options, backend=name)
            ev._prepared = (model, forward)
            assert rel(ev.predict(model, image, (1024, 2048)), ref) < TOL, (name, options)
