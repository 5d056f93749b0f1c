"""The attention blocks against the paper's formulas, the lean paths against
the unfused ones, and the reference layout (docs/reference.md)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ann.models.heads import AFNB, APNB, NonLocal2d
from ann.models.heads.attention import pyramid_pool

SIZES = (1, 3, 6, 8)


def _randomise(module: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and a non-zero Wo, so folding is exercised."""
    torch.manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
        if isinstance(m, nn.Conv2d) and m.weight.abs().sum() == 0:
            nn.init.normal_(m.weight, std=0.1)
            nn.init.normal_(m.bias, std=0.1)
    return module


def _pool(x: torch.Tensor, sizes=SIZES) -> torch.Tensor:
    return torch.cat([F.adaptive_avg_pool2d(x, s).flatten(2) for s in sizes], 2)


def _unfused(block: nn.Module, context: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The block's output as the reference writes it: fuse(cat[Wo(context), x])."""
    return block.dropout(block.fuse(torch.cat([block.out_proj(context), x], dim=1)))


def _formula_apnb(block: APNB, x: torch.Tensor) -> torch.Tensor:
    phi = block.query_key(x)  # (B, C', H, W), shared with the keys
    theta_p = _pool(phi, block.pool.sizes)  # (B, C', S)
    gamma_p = _pool(block.value(x), block.pool.sizes)  # (B, Cv, S)
    v_p = torch.softmax(phi.flatten(2).transpose(1, 2) @ theta_p / block.key_channels**0.5, -1)
    return (v_p @ gamma_p.transpose(1, 2)).transpose(1, 2).reshape(x.shape[0], -1, *x.shape[2:])


def _formula_afnb(block: AFNB, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    phi = block.query(high).flatten(2)  # (B, C', N)
    theta_p = _pool(block.key(low), block.pool.sizes)
    gamma_p = _pool(block.value(low), block.pool.sizes)
    v_p = torch.softmax(phi.transpose(1, 2) @ theta_p / block.key_channels**0.5, -1)
    return (
        (v_p @ gamma_p.transpose(1, 2)).transpose(1, 2).reshape(high.shape[0], -1, *high.shape[2:])
    )


def _formula_nonlocal(block: NonLocal2d, x: torch.Tensor) -> torch.Tensor:
    phi = block.query_key(x).flatten(2)  # (B, C', N)
    gamma = block.value(x).flatten(2)  # (B, Cv, N)
    v = torch.softmax(phi.transpose(1, 2) @ phi / block.key_channels**0.5, -1)  # (B, N, N)
    return (v @ gamma.transpose(1, 2)).transpose(1, 2).reshape(x.shape[0], -1, *x.shape[2:])


@pytest.mark.parametrize("hw", [(13, 17), (8, 8), (5, 29), (1, 3)])
def test_pyramid_pool_matches_adaptive_avg_pool(hw: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *hw)
    torch.testing.assert_close(pyramid_pool(x, SIZES), _pool(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("impl", ["sdpa", "matmul"])
def test_blocks_match_paper_formulas(impl: str) -> None:
    torch.manual_seed(0)
    x, low = torch.randn(2, 16, 11, 9), torch.randn(2, 12, 11, 9)
    apnb = _randomise(APNB(16, 16, 8, 6, attention=impl)).eval()
    afnb = _randomise(AFNB(12, 16, 20, 8, 6, attention=impl)).eval()
    nl = _randomise(NonLocal2d(16, 16, 8, 6, attention=impl)).eval()
    with torch.no_grad():
        tol = {"atol": 1e-5, "rtol": 1e-5}
        torch.testing.assert_close(apnb.context(x), _formula_apnb(apnb, x), **tol)
        torch.testing.assert_close(afnb.context(low, x), _formula_afnb(afnb, low, x), **tol)
        torch.testing.assert_close(nl.context(x), _formula_nonlocal(nl, x), **tol)


def test_sdpa_and_matmul_paths_agree() -> None:
    torch.manual_seed(0)
    x, low = torch.randn(2, 16, 11, 9), torch.randn(2, 12, 11, 9)
    for make in (
        lambda impl: APNB(16, 16, 8, 6, attention=impl),
        lambda impl: NonLocal2d(16, 16, 8, 6, attention=impl),
    ):
        a = _randomise(make("sdpa")).eval()
        b = _randomise(make("matmul")).eval()
        b.load_state_dict(a.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)
    a = _randomise(AFNB(12, 16, 20, 8, 6, attention="sdpa")).eval()
    b = _randomise(AFNB(12, 16, 20, 8, 6, attention="matmul")).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(a(low, x), b(low, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_lean_fuse_equals_unfused(train: bool) -> None:
    """Folded BN / Wo and the concat-free fuse give the unfused results, and
    the same gradients in training."""
    torch.manual_seed(0)
    # float64 in training, so gradients compare tightly despite reassociation.
    dtype = torch.float64 if train else torch.float32
    x, low = torch.randn(2, 16, 7, 10, dtype=dtype), torch.randn(2, 12, 7, 10, dtype=dtype)
    cases = [
        (_randomise(APNB(16, 24, 8, 6, dropout=0.0)).to(dtype), (x,)),
        (_randomise(NonLocal2d(16, 24, 8, 6, dropout=0.0)).to(dtype), (x,)),
        (_randomise(AFNB(12, 16, 20, 8, 6, dropout=0.0)).to(dtype), (low, x)),
    ]
    for block, inputs in cases:
        block.train(train)
        keys = list(block.state_dict())
        ref_block = copy.deepcopy(block)  # same parameters and BN buffers
        lean = block(*inputs)
        ref = _unfused(ref_block, ref_block.context(*inputs), inputs[-1])
        torch.testing.assert_close(lean, ref, atol=1e-5, rtol=1e-5)
        assert list(block.state_dict()) == keys
        if train:
            lean.square().sum().backward()
            ref.square().sum().backward()
            ref_params = dict(ref_block.named_parameters())
            for name, p in block.named_parameters():
                assert p.grad is not None, name
                torch.testing.assert_close(p.grad, ref_params[name].grad, atol=1e-8, rtol=1e-6)


def test_layout_matches_design() -> None:
    apnb, afnb = APNB(32, 32, 16, 8), AFNB(24, 32, 40, 16, 8)
    # APNB: one shared query/key projection; AFNB: separate ones.
    assert hasattr(apnb, "query_key") and not hasattr(apnb, "key")
    assert isinstance(afnb.query[1], nn.BatchNorm2d) and isinstance(afnb.key[1], nn.BatchNorm2d)
    assert afnb.query[0].in_channels == 32 and afnb.key[0].in_channels == 24
    for block in (apnb, afnb):
        assert isinstance(block.value, nn.Conv2d)  # value: a conv without BN
        assert block.out_proj.weight.abs().sum() == 0 and block.out_proj.bias.abs().sum() == 0
        assert isinstance(block.dropout, nn.Dropout2d) and block.dropout.p == 0.05
        assert block.pool.sizes == SIZES
    assert isinstance(apnb.fuse[-1], nn.ReLU) and apnb.fuse[0].in_channels == 64
    assert len(afnb.fuse) == 2 and afnb.fuse[0].in_channels == 72  # conv + BN, no ReLU


def test_blocks_backward_and_zero_init_start() -> None:
    """Wo starts at zero, so the context does not change the first output,
    yet Wo gets a gradient."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 9, 9)
    block = APNB(16, 16, 8, 8, dropout=0.0).train()
    block(x).sum().backward()
    assert block.out_proj.weight.grad.abs().sum() > 0
    assert block.query_key[0].weight.grad is None or block.query_key[0].weight.grad.abs().sum() == 0


def test_eval_folding_tracks_loaded_weights() -> None:
    """Folding is done on the fly: after load_state_dict (or training steps)
    the eval output is that of the new weights, and the keys are the
    reference layout's."""
    torch.manual_seed(0)
    x = torch.randn(1, 16, 6, 6)
    a, b = _randomise(APNB(16, 16, 8, 8)).eval(), APNB(16, 16, 8, 8).eval()
    with torch.no_grad():
        before = b(x)
        b.load_state_dict(a.state_dict())
        torch.testing.assert_close(b(x), a(x))
        assert not torch.allclose(before, b(x))
    keys = set(a.state_dict())
    assert {"query_key.0.weight", "query_key.1.running_var", "value.weight", "value.bias"} <= keys
    assert {"out_proj.weight", "out_proj.bias", "fuse.0.weight", "fuse.1.running_mean"} <= keys


@pytest.mark.parametrize("train", [False, True])
def test_blocks_under_autocast(train: bool) -> None:
    """Mixed precision (trainer.amp): the in-place accumulation keeps one dtype."""
    torch.manual_seed(0)
    x, low = torch.randn(2, 16, 7, 9), torch.randn(2, 12, 7, 9)
    apnb, afnb = APNB(16, 16, 8, 8).train(train), AFNB(12, 16, 16, 8, 8).train(train)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = afnb(low, apnb(x))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    if train:
        out.float().sum().backward()
        assert apnb.fuse[0].weight.grad is not None


def test_shared_projection_bn_updates_twice_per_step() -> None:
    """APNB's shared key/query BN takes two running-stat steps per training
    forward (the references call it for the query and for the key): momentum
    1-(1-m)², counter +2; outputs and gradients do not depend on it."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 9, 11, dtype=torch.float64)
    twice = _randomise(APNB(16, 16, 8, 6, dropout=0.0)).double().train()
    once = copy.deepcopy(twice)
    once.query_key_bn_updates = 1
    bn0 = copy.deepcopy(twice.query_key[1])
    out2, out1 = twice(x), once(x)
    torch.testing.assert_close(out2, out1, rtol=0, atol=0)
    y = twice.query_key[0](x)
    m = bn0.momentum
    mean, var = y.mean((0, 2, 3)), y.var((0, 2, 3), unbiased=True)
    bn = twice.query_key[1]
    torch.testing.assert_close(
        bn.running_mean, (1 - m) ** 2 * bn0.running_mean + (1 - (1 - m) ** 2) * mean
    )
    torch.testing.assert_close(
        bn.running_var, (1 - m) ** 2 * bn0.running_var + (1 - (1 - m) ** 2) * var
    )
    assert int(bn.num_batches_tracked) == int(bn0.num_batches_tracked) + 2
    assert int(once.query_key[1].num_batches_tracked) == int(bn0.num_batches_tracked) + 1
    assert set(twice.state_dict()) == set(once.state_dict())
