"""The ablation axes of the attention blocks (normalisation f, output form,
pyramid sizes, head composition) against loop-free formulas, and the
defaults against the outputs of the code before the options existed."""

from __future__ import annotations

import copy
import itertools
import logging

import pytest
import torch
import torch.nn.functional as F
from head_snapshot import SNAPSHOT, cases, fill_weights, make_inputs, run
from hydra.utils import instantiate
from torch import Tensor, nn

from ann.config.compat import upgrade_config
from ann.errors import ConfigError
from ann.models.heads import AFNB, APNB, ANNHead, NonLocal2d

NORMS = ("softmax", "rescale", "none")
DTYPE = torch.float64  # tight tolerances despite the reassociated paths


def _pool(x: Tensor, sizes) -> Tensor:
    """(B, C, H, W) -> (B, C, S): the paper's pyramid sampling P."""
    return torch.cat([F.adaptive_avg_pool2d(x, s).flatten(2) for s in sizes], 2)


def _f(sim: Tensor, normalization: str) -> Tensor:
    """The normalisation f of the similarity map (B, N, S) over its S anchors."""
    if normalization == "softmax":
        return sim.softmax(-1)
    if normalization == "rescale":
        return sim / sim.shape[-1]
    return sim


def _attention(phi: Tensor, theta: Tensor, gamma: Tensor, block: nn.Module) -> Tensor:
    """O = f(φᵀθ/√C')·γᵀ with φ (B, C', N), θ (B, C', S), γ (B, Cv, S) -> (B, Cv, N)."""
    v = _f(phi.transpose(1, 2) @ theta / block.key_channels**0.5, block.normalization)
    return (v @ gamma.transpose(1, 2)).transpose(1, 2)


def formula_context(block: nn.Module, *inputs: Tensor) -> Tensor:
    """The block's attention context O as (B, Cv, H, W), from its own modules."""
    x = inputs[-1]
    if isinstance(block, AFNB):
        low = inputs[0]
        phi = block.query(x).flatten(2)
        if block.pool is None:  # dense fusion: every low-level position
            theta, gamma = block.key(low).flatten(2), block.value(low).flatten(2)
        else:
            theta = _pool(block.key(low), block.pool.sizes)
            gamma = _pool(block.value(low), block.pool.sizes)
    else:
        phi = block.query_key(x).flatten(2)  # shared with the keys
        if isinstance(block, NonLocal2d):
            theta, gamma = phi, block.value(x).flatten(2)
        else:
            theta = _pool(block.query_key(x), block.pool.sizes)
            gamma = _pool(block.value(x), block.pool.sizes)
    return _attention(phi, theta, gamma, block).reshape(x.shape[0], -1, *x.shape[2:])


def formula_output(block: nn.Module, *inputs: Tensor) -> Tensor:
    """Y = dropout(fuse(cat[Wo(O), X])) (concat) or Y = Wo(O) + X (residual)."""
    x, wo = inputs[-1], block.out_proj(formula_context(block, *inputs))
    if block.output == "residual":
        return wo + x
    return block.dropout(block.fuse(torch.cat([wo, x], dim=1)))


def randomise(module: nn.Module) -> nn.Module:
    """fill_weights (BN statistics, non-zero Wo) in float64, eval mode."""
    return fill_weights(module.to(DTYPE)).eval()


def _blocks(normalization: str, output: str, impl: str) -> list[tuple[nn.Module, tuple]]:
    opts = {"normalization": normalization, "output": output, "attention": impl}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 7, 9, generator=g, dtype=DTYPE)
    low = torch.randn(2, 12, 5, 6, generator=g, dtype=DTYPE)  # another size than x
    return [
        (APNB(16, 16, 8, 6, **opts), (x,)),
        (AFNB(12, 16, 16, 8, 6, **opts), (low, x)),
        (AFNB(12, 16, 16, 8, 6, pool_sizes=None, **opts), (low, x)),
        (NonLocal2d(16, 16, 8, 6, **opts), (x,)),
    ]


@pytest.mark.parametrize("output", ["concat", "residual"])
@pytest.mark.parametrize("normalization", NORMS)
def test_blocks_match_formulas(normalization: str, output: str) -> None:
    """Every block × f × output form, both attention paths, against the formulas."""
    tol = {"rtol": 1e-10, "atol": 1e-12}
    for impl in ("sdpa", "matmul"):
        for block, inputs in _blocks(normalization, output, impl):
            block = randomise(block)
            with torch.no_grad():
                torch.testing.assert_close(
                    block.context(*inputs), formula_context(block, *inputs), **tol
                )
                torch.testing.assert_close(block(*inputs), formula_output(block, *inputs), **tol)


@pytest.mark.parametrize("output", ["concat", "residual"])
@pytest.mark.parametrize("normalization", ["rescale", "none"])
def test_options_train_and_backprop_like_the_formula(normalization: str, output: str) -> None:
    """Training mode (batch-statistics BN, dropout off): the same outputs and
    parameter gradients as the formula, for the reassociated SDPA path too."""
    for block, inputs in _blocks(normalization, output, "sdpa"):
        block = randomise(block).train()
        if hasattr(block, "dropout"):
            block.dropout.p = 0.0
        ref = copy.deepcopy(block)  # same parameters and BN buffers
        out, expected = block(*inputs), formula_output(ref, *inputs)
        torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-11)
        out.square().sum().backward()
        expected.square().sum().backward()
        ref_params = dict(ref.named_parameters())
        for name, p in block.named_parameters():
            assert p.grad is not None, name
            torch.testing.assert_close(p.grad, ref_params[name].grad, rtol=1e-8, atol=1e-10)


def test_residual_starts_as_identity() -> None:
    """Wo is zero-initialised: a fresh residual block returns its input, and
    has no fuse conv, BN or dropout (Y = Wo(O) + X exactly)."""
    x = torch.randn(2, 16, 5, 6)
    for block in (
        APNB(16, 16, 8, 6, output="residual"),
        NonLocal2d(16, 16, 8, 6, output="residual"),
    ):
        assert not hasattr(block, "fuse") and not hasattr(block, "dropout")
        torch.testing.assert_close(block.eval()(x), x)
    afnb = AFNB(12, 16, 16, 8, 6, output="residual").eval()
    torch.testing.assert_close(afnb(torch.randn(2, 12, 4, 4), x), x)


@pytest.mark.parametrize(
    "sizes", [s for k in range(1, 5) for s in itertools.combinations((1, 3, 6, 8), k)]
)
def test_any_pyramid_subset(sizes: tuple[int, ...], caplog: pytest.LogCaptureFixture) -> None:
    """Every non-empty n ⊆ {1, 3, 6, 8}: S = Σ n² anchors, logged, and the
    context is the formula's."""
    with caplog.at_level(logging.INFO, logger="ann.models.heads"):
        block = randomise(APNB(16, 16, 8, 6, pool_sizes=list(sizes)))
    s = sum(n * n for n in sizes)
    assert f"S = {s} anchors" in caplog.text
    x = torch.randn(1, 16, 9, 11, dtype=DTYPE)
    with torch.no_grad():
        assert block.pool(x).shape == (1, 16, s)
        torch.testing.assert_close(
            block.context(x), formula_context(block, x), rtol=1e-10, atol=1e-12
        )


def test_default_pyramid_logs_110_anchors(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ann.models.heads"):
        APNB(16, 16, 8, 6)
        AFNB(12, 16, 16, 8, 6, pool_sizes=None)
    assert "APNB: pool sizes (1, 3, 6, 8), S = 110 anchors" in caplog.text
    assert "AFNB: dense keys and values (FNB)" in caplog.text


COMBOS = list(itertools.product(("afnb", "dense", "none"), ("apnb", "dense", "none")))


@pytest.mark.parametrize(("fusion", "context"), COMBOS)
def test_head_composition(fusion: str, context: str) -> None:
    """ANNHead with each block choice: the composition of the formulas, and
    state_dict keys only for the blocks present."""
    head = randomise(
        ANNHead([12, 16], 8, 5, 4, 6, fusion_channels=10, fusion=fusion, context=context)
    )
    g = torch.Generator().manual_seed(0)
    low = torch.randn(2, 12, 7, 9, generator=g, dtype=DTYPE)
    high = torch.randn(2, 16, 7, 9, generator=g, dtype=DTYPE)
    keys = {k.split(".")[0] for k in head.state_dict()}
    assert ("fusion" in keys) == (fusion != "none") and ("context" in keys) == (context != "none")
    if fusion != "none":
        assert isinstance(head.fusion, AFNB) and (head.fusion.pool is None) == (fusion == "dense")
    if context != "none":
        assert isinstance(head.context, NonLocal2d if context == "dense" else APNB)
    with torch.no_grad():
        x = high if fusion == "none" else formula_output(head.fusion, low, high)
        x = head.bottleneck(x)
        x = x if context == "none" else formula_output(head.context, x)
        expected = head.classifier(x)
        out = head([None, None, low, high])
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_a_saved_nonlocal_head_config_builds_the_same_head() -> None:
    """A checkpoint's config from before NonLocalHead merged into ANNHead
    still builds (ann/config/compat.py): the dense-context ANN head with the
    former class's state_dict keys, reading res5, with its dropout."""
    old = {
        "_target_": "ann.models.heads.NonLocalHead",
        "in_channels": 16,
        "channels": 8,
        "num_classes": 5,
        "key_channels": 4,
        "value_channels": 6,
        "block_dropout": 0.05,
        "dropout": 0.1,
        "attention": "sdpa",
        "in_index": 3,
    }
    head = instantiate(upgrade_config({"decode_head": old})["decode_head"])
    assert isinstance(head, ANNHead) and head.fusion is None
    assert isinstance(head.context, NonLocal2d) and head.in_index == (3, 3)
    keys = torch.load(SNAPSHOT, weights_only=True)["nonlocal_head"]["keys"]
    assert list(head.state_dict()) == keys
    feats = [None, None, None, torch.randn(1, 16, 6, 7)]
    assert head.eval()(feats).shape == (1, 5, 6, 7)


def test_options_pass_through_the_head() -> None:
    head = ANNHead([12, 16], 8, 5, 4, 6, pool_sizes=[1, 3], normalization="none", output="residual")
    for block in (head.fusion, head.context):
        assert block.normalization == "none" and block.output == "residual"
        assert block.pool.sizes == (1, 3)


BAD = [
    (lambda: APNB(16, 16, 8, 6, normalization="sigmoid"), "normalization must be one of"),
    (lambda: NonLocal2d(16, 16, 8, 6, output="sum"), "output must be one of"),
    (lambda: APNB(16, 24, 8, 6, output="residual"), "output: residual"),
    (lambda: AFNB(12, 16, 20, 8, 6, output="residual"), "output: residual"),
    (lambda: APNB(16, 16, 8, 6, pool_sizes=[]), "pool_sizes must be a non-empty list"),
    (lambda: APNB(16, 16, 8, 6, pool_sizes=None), "pool_sizes must be a non-empty list"),
    (lambda: AFNB(12, 16, 16, 8, 6, pool_sizes=[1, 0]), "pool_sizes must hold integers >= 1"),
    (lambda: ANNHead([12, 16], 8, 5, fusion="fnb"), "fusion must be one of"),
    (lambda: ANNHead([12, 16], 8, 5, context="nb"), "context must be one of"),
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_bad_options_are_one_line_config_errors(make, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


# How far a result may sit from the stored one, in multiples of its own fp64
# noise: that noise is measured in the test by perturbing the inputs by one
# unit in the last place, which moves each tensor by about as much as another
# machine's summation order does (AFNB's training gradients, through BN's
# batch statistics and a softmax: ~1e-11; most tensors: ~5e-16). A change of
# the defaults' numbers moves them by 1e-3 or more (test_control_catches_...).
NOISE_MULTIPLE = 100


def _perturbed(inputs: list[Tensor]) -> list[Tensor]:
    """``inputs`` in fp64, each element scaled by (1 + δ), |δ| ~ 2⁻⁵²."""
    generator = torch.Generator().manual_seed(7)
    return [
        t.double() * (1 + torch.randn(t.shape, generator=generator, dtype=DTYPE) * 2**-52)
        for t in inputs
    ]


def _errors(name: str, make) -> list[tuple[str, float, float]]:
    """(tensor, relative error against the snapshot, tolerance) for every
    output and input gradient of ``make()`` on case ``name``'s inputs."""
    snapshot = torch.load(SNAPSHOT, weights_only=True)[name]
    kind = cases()[name][1]
    inputs = make_inputs(kind)
    rows = []
    for mode in ("eval", "train"):
        got = run(fill_weights(make()), kind, inputs, mode == "train")
        noisy = run(fill_weights(make()), kind, _perturbed(inputs), mode == "train")
        assert len(got) == len(noisy) == len(snapshot[mode])
        for i, (g, n, want) in enumerate(zip(got, noisy, snapshot[mode], strict=True)):
            assert g.shape == want.shape and g.dtype == want.dtype
            scale = want.abs().max()
            noise = max(float((g - n).abs().max() / scale), 2**-52)
            err = float((g - want).abs().max() / scale)
            rows.append((f"{name} ({mode}) tensor {i}", err, NOISE_MULTIPLE * noise))
    return rows


@pytest.mark.parametrize("name", sorted(cases()))
def test_defaults_unchanged(name: str) -> None:
    """At the default options every block and head computes what the code
    computed before the ablation options (tests/head_snapshot.py), in eval and
    in training (outputs and input gradients), with the same keys. In fp64, to
    a tolerance derived from each tensor's own rounding noise: the snapshot
    was recorded on another CPU, which sums in another order."""
    make = cases()[name][0]
    assert list(make().state_dict()) == torch.load(SNAPSHOT, weights_only=True)[name]["keys"]
    for tensor, err, tol in _errors(name, make):
        assert err <= tol, f"{tensor}: relative error {err:.2e} > tolerance {tol:.2e}"


NON_DEFAULT = {
    "apnb_sdpa": lambda: APNB(16, 16, 8, 6, normalization="rescale"),
    "afnb_matmul": lambda: AFNB(12, 16, 20, 8, 6, attention="matmul", normalization="none"),
    "ann_head": lambda: ANNHead([12, 16], 8, 5, 4, 6, fusion_channels=16, pool_sizes=[1, 2]),
}


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_control_catches_a_changed_default(name: str) -> None:
    """The control: one option flipped from its default moves the outputs far
    past the tolerance (by orders of magnitude), so the test above would fail."""
    rows = _errors(name, NON_DEFAULT[name])
    worst = max(err / tol for _, err, tol in rows)
    assert worst > 1e4, f"{name}: a changed default stays within {worst:.1e} x tolerance"


@pytest.mark.parametrize("normalization", ["rescale", "none"])
def test_options_under_autocast(normalization: str) -> None:
    """Mixed precision with the non-default options: finite, one dtype."""
    apnb = APNB(16, 16, 8, 8, normalization=normalization, output="residual").train()
    afnb = AFNB(12, 16, 16, 8, 8, normalization=normalization, pool_sizes=None).train()
    x, low = torch.randn(2, 16, 7, 9), torch.randn(2, 12, 7, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = afnb(low, apnb(x))
    assert torch.isfinite(out).all()
    out.float().sum().backward()
    assert apnb.out_proj.weight.grad is not None
