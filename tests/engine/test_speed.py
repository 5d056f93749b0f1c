"""The speed options (ann.speed) keep results equal.

Tolerances (docs/performance.md): channels_last reorders fp32 sums only, so
losses and logits agree to fp32 rounding (1e-4 relative after three SGD steps;
1e-12 in fp64 for the heads); bf16 autocast keeps 8 bits of mantissa in the
matmuls and convolutions, so losses agree to 3e-2 relative; torch.compile
fuses the same fp32 operations (1e-4).
"""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torch.profiler import ProfilerActivity, profile

from ann.errors import ConfigError
from ann.evaluation.evaluator import Evaluator
from ann.models.heads import ANNHead
from ann.models.pretrained import without_pretrained
from ann.speed import autocast, forward_fn, prepare_model, to_input, unwrap
from helpers import compose_cfg


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _head(train: bool) -> ANNHead:
    torch.manual_seed(0)
    head = ANNHead([24, 40], 16, 5, 8, 8, fusion_channels=32, in_index=(0, 1)).double()
    for m in head.modules():  # a non-zero Wo and BN statistics, so every path counts
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
        if hasattr(m, "out_proj"):
            nn.init.normal_(m.out_proj.weight, std=0.2)
    return head.train(train)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_channels_last_heads_equal_and_stay_nhwc(train: bool) -> None:
    head = _head(train)
    low = torch.randn(2, 24, 9, 13, dtype=torch.float64, requires_grad=True)
    high = torch.randn(2, 40, 9, 13, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)  # the same dropout masks in both runs
    ref = head([low, high])
    ref_grads = torch.autograd.grad(ref.square().sum(), [low, high]) if train else None
    low_cl, high_cl = _nhwc(low.detach()).requires_grad_(), _nhwc(high.detach()).requires_grad_()
    torch.manual_seed(1)
    out = head([low_cl, high_cl])
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    if train:
        grads = torch.autograd.grad(out.square().sum(), [low_cl, high_cl])
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


def _full_size_copies(head: nn.Module, low: torch.Tensor, high: torch.Tensor) -> int:
    """aten::copy_ calls over as many elements as a whole input feature map."""
    sizes = {low.numel(), high.numel()}
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        head([low, high])
    count = 0
    for event in prof.events():
        if event.name == "aten::copy_" and event.input_shapes and event.input_shapes[0]:
            numel = 1
            for d in event.input_shapes[0]:
                numel *= d
            count += numel in sizes
    return count


def test_channels_last_heads_do_not_copy_to_nchw() -> None:
    """The hand-written GEMMs read NHWC maps as (B, N, C) views: channels_last
    inputs add no whole-map copies over NCHW ones (baddbmm's own bias fill of
    its output is the one both layouts have)."""
    head = _head(False).float()
    low, high = torch.randn(2, 24, 17, 23), torch.randn(2, 40, 17, 23)
    nchw = _full_size_copies(head, low, high)
    head.to(memory_format=torch.channels_last)
    assert _full_size_copies(head, _nhwc(low), _nhwc(high)) <= nchw


def _losses(options: str, steps: int = 3) -> list[float]:
    cfg = compose_cfg(["experiment=demo"], "train")
    torch.manual_seed(0)
    model = instantiate(without_pretrained(cfg.model)).train()
    channels_last = "cl" in options
    dtype = torch.bfloat16 if "bf16" in options else None
    net = prepare_model(model, channels_last=channels_last, compile="compile" in options)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 64, 64, generator=gen)
    target = torch.randint(0, 5, (2, 64, 64), generator=gen)
    losses = []
    for step in range(steps):
        torch.manual_seed(100 + step)  # the same dropout masks for every option set
        with autocast("cpu", dtype):
            outputs = net(to_input(images, channels_last))
        loss = model.compute_loss(outputs, target)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_training_options_keep_losses_equal() -> None:
    ref = _losses("fp32")
    assert _losses("cl") == pytest.approx(ref, rel=1e-4)
    assert _losses("bf16") == pytest.approx(ref, rel=3e-2)
    assert _losses("bf16+cl") == pytest.approx(ref, rel=3e-2)


@pytest.mark.slow
def test_compiled_training_keeps_losses_equal() -> None:
    # Compiled graphs draw dropout masks from inductor's own RNG unless told to
    # fall back to eager's: only then are the masks, and the losses, the same.
    from torch._inductor import config

    with config.patch(fallback_random=True):
        compiled = _losses("compile")
    assert compiled == pytest.approx(_losses("fp32"), rel=1e-4)


def test_compiled_model_unwraps_to_its_state() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1))
    compiled = prepare_model(model, compile=True)
    assert unwrap(compiled) is model
    assert list(unwrap(compiled).state_dict()) == ["0.weight", "0.bias"]
    with pytest.raises(ConfigError, match="trainer.compile_mode"):
        prepare_model(model, compile=True, compile_mode="fastest")


def test_forward_fn_returns_fp32_logits_in_any_layout() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)).eval()
    x = torch.randn(1, 3, 8, 8)
    ref = model(x)
    out = forward_fn(model, None, True)(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    low = forward_fn(model, torch.bfloat16, True)(x)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, rtol=5e-2, atol=5e-2)
    assert forward_fn(model, None, False) is model


class _Images(torch.utils.data.Dataset):
    """Random images with the labels a fixed rule gives, for evaluator runs."""

    classes = ("a", "b", "c")
    palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    num_classes = 3
    ignore_index = 255

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> dict:
        gen = torch.Generator().manual_seed(i)
        image = torch.randn(3, 32, 48, generator=gen)
        mask = (image[0] > 0).long() + (image[1] > 0.5).long()
        return {"image": image, "mask": mask, "name": f"img{i}"}


@pytest.mark.parametrize(
    "options, max_changed",
    [({"channels_last": True}, 1e-3), ({"amp": True, "channels_last": True}, 2e-2)],
    ids=["channels_last", "bf16+channels_last"],
)
def test_evaluator_options_keep_predictions(options: dict, max_changed: float) -> None:
    """Predictions agree up to pixels whose top two classes are within rounding."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    ref = Evaluator(num_workers=0, scales=[1.0, 0.75], flip=True)
    fast = Evaluator(num_workers=0, scales=[1.0, 0.75], flip=True, **options)
    ref.evaluate(model, _Images(), progress=False)
    fast.evaluate(model, _Images(), progress=False)
    diff = (ref.last_confusion - fast.last_confusion).abs().sum() / 2
    assert diff / ref.last_confusion.sum() <= max_changed
    assert model[0].weight.is_contiguous()  # the evaluator leaves the model's layout alone
