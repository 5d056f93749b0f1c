"""Training equals the references: train-mode parity in float64.

The reference networks of tests/reference (mmsegmentation's ANN and the
authors' MendelXu/ANN network, with their training losses) and this
project's model built by the real :class:`Trainer` from the experiment's own
config start from the same weights (the reference's, through
:mod:`ann.convert`), see the same batch and the same global-RNG seed before
each forward, and take the same optimizer steps: the experiment's SGD and
poly schedule here, torch SGD with mmengine's PolyLR (mmseg) or the authors'
lambda poly there. Every loss and every parameter and BN buffer afterwards
must agree to 1e-9 relative, with dropout off and with seeded dropout on
(both draw the same masks when their Dropout2d layers run in the same order
on the same shapes). The guards below pin each experiment's training
defaults to its reference, so that a config change cannot drift silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from ann.convert import mmseg, official
from ann.convert.layout import add_bn_counters, fold_conv_bias, rename
from ann.engine.trainer import Trainer
from helpers import CONFIG_DIR, compose_cfg
from reference import mmseg_ann, official_ann
from reference.weights import randomise
from tiny_models import TinyBackbone
from trees import make_cityscapes

STEPS = 3
TOL = 1e-9
CITYSCAPES_WEIGHTS = [
    0.8373,
    0.918,
    0.866,
    1.0345,
    1.0166,
    0.9969,
    0.9754,
    1.0489,
    0.8786,
    1.0023,
    0.9539,
    0.9843,
    1.1116,
    0.9037,
    1.0865,
    1.0955,
    1.0865,
    1.1529,
    1.0507,
]
OFFICIAL = ("cityscapes_ann_official", "pascal_context_ann")


def batch(size: tuple[int, int], num_classes: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(2, 3, H, W) float64 images and (2, H, W) labels with about 17% ignored."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, *size, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, num_classes, (2, *size), generator=gen)
    labels[torch.rand(2, *size, generator=gen) < 0.17] = 255
    return images, labels


def to_ours(source: str, ref: nn.Module) -> dict[str, Tensor]:
    """The reference's current weights in this project's layout: the
    converters' rename tables (and, for the authors' layout, the conv biases
    folded into BN), with backbone keys of the tiny stub passed through."""
    if source == "mmseg":
        state, table, what = ref.state_dict(), mmseg.RENAMES, "mmseg"
    else:
        state = ref.state_dict()
        table, what = [*official.RENAMES, ("backbone.", "backbone.")], "official"
    model = rename(state, table, Path("reference"), what)
    if source == "official":
        fold_conv_bias(model, official.BIASED_CONVS)
    add_bn_counters(model)
    return {k: v.clone() for k, v in model.items()}


def build_trainer(experiment: str, weights: Path, tmp: Path, overrides: list[str]) -> Trainer:
    """The real Trainer of ``experiment`` (weights from ``weights``, then
    float64) on a two-image Cityscapes tree it never reads from here. With
    ``tiny`` in ``overrides``' place the backbone is tests/tiny_models.py's
    TinyBackbone."""
    root = make_cityscapes(tmp / "cs", {"train": {"aachen": 2}, "val": {"ulm": 1}}, (64, 128))
    tiny = "tiny" in overrides
    cfg = compose_cfg(
        [
            f"experiment={experiment}",
            f"dataset.root={root}",
            f"output_dir={tmp / 'run'}",
            f"trainer.load_from={weights}",
            "trainer.num_workers=0",
            "evaluator.num_workers=0",
            "dataset.crop_size=[64,64]",
            "dataset.scale=[128,64]",
            "trainer.resume=false",
            *[o for o in overrides if o != "tiny"],
        ]
    )
    if tiny:
        cfg.model.backbone = OmegaConf.create({"_target_": "tiny_models.TinyBackbone"})
    trainer = Trainer(cfg)
    trainer.model.double()
    return trainer


def train_ours(trainer: Trainer, images: Tensor, labels: Tensor, seeds: list[int]) -> list[Tensor]:
    """``Trainer.train_step`` on the same batch, the global RNG seeded before
    each; returns the float64 total losses (train_step reports float32)."""
    model = trainer.model
    seen: list[Tensor] = []
    compute = model.compute_loss

    def recording(outputs: dict[str, Tensor], target: Tensor) -> dict[str, Tensor]:
        losses = compute(outputs, target)
        seen.append(losses["loss"].detach())
        return losses

    model.compute_loss = recording
    model.train()
    for seed in seeds:
        torch.manual_seed(seed)
        trainer.train_step(iter([{"image": images, "mask": labels}]))
    del model.compute_loss
    return seen


def train_mmseg(ref: nn.Module, images: Tensor, labels: Tensor, seeds: list[int]) -> list[Tensor]:
    """mmseg's recipe: SGD lr 0.01 momentum 0.9 wd 5e-4 on every parameter,
    PolyLR power 0.9 to 1e-4 over 40k iterations stepped after each update."""
    opt = torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sched = mmseg_ann.PolyLR(opt, total=40000, power=0.9, eta_min=1e-4)
    losses = []
    for seed in seeds:
        opt.zero_grad()
        torch.manual_seed(seed)
        loss = sum(ref.loss(images, labels).values())
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.detach())
    return losses


def train_official(
    ref: nn.Module, images: Tensor, labels: Tensor, seeds: list[int]
) -> list[Tensor]:
    """The authors' Cityscapes run: SGD lr 0.01 momentum 0.9 wd 5e-4,
    lambda_poly 0.9 over 60k set before each iteration, FSAuxOhemCELoss
    (thresh 0.7, min_kept 100000, their class weights)."""
    # torch.FloatTensor(ce_weight) in their FSCELoss/FSOhemCELoss: float32 values.
    weight = torch.tensor(CITYSCAPES_WEIGHTS, dtype=torch.float32).double()
    opt = torch.optim.SGD(ref.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    losses = []
    for it, seed in enumerate(seeds):
        for group in opt.param_groups:
            group["lr"] = 0.01 * (1 - it / 60000) ** 0.9
        opt.zero_grad()
        torch.manual_seed(seed)
        loss = official_ann.aux_ohem_ce_loss(ref(images), labels, class_weight=weight)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return losses


def check_parity(
    source: str, ref: nn.Module, tmp: Path, overrides: list[str], dropout: bool, size=(41, 57)
) -> tuple[float, float]:
    """Trains ours (the experiment of ``source``) and ``ref`` side by side;
    asserts and returns the largest loss and state relative errors."""
    experiment = {"mmseg": "cityscapes_ann", "official": "cityscapes_ann_official"}[source]
    ref = ref.double().train()
    tmp.mkdir(parents=True, exist_ok=True)
    weights = tmp / "ref.pth"
    torch.save({"model": to_ours(source, ref), "iteration": 0}, weights)
    trainer = build_trainer(experiment, weights, tmp, overrides)
    if not dropout:
        for m in [*ref.modules(), *trainer.model.modules()]:
            if isinstance(m, nn.Dropout2d):
                m.p = 0.0
    images, labels = batch(size, 19)
    seeds = list(range(10, 10 + STEPS))
    ours = train_ours(trainer, images, labels, seeds)
    theirs = (train_mmseg if source == "mmseg" else train_official)(ref, images, labels, seeds)
    loss_err = max(rel_err(a, b) for a, b in zip(ours, theirs, strict=True))
    assert loss_err < TOL, loss_err
    state_err = compare_states(trainer.model, to_ours(source, ref))
    print(f"{source} dropout={dropout}: loss {loss_err:.1e}, state {state_err:.1e}")
    return loss_err, state_err


def rel_err(ours: Tensor, ref: Tensor) -> float:
    ours, ref = ours.double(), ref.double()
    scale = ref.abs().max()
    diff = (ours - ref).abs().max()
    return float(diff if scale == 0 else diff / scale)


def compare_states(ours: nn.Module, converted: dict[str, Tensor]) -> float:
    """The largest relative error over every parameter and buffer; the BN
    counters must be equal."""
    state = ours.state_dict()
    assert set(state) == set(converted)
    worst = 0.0
    for key, ref in converted.items():
        if key.endswith("num_batches_tracked"):
            assert int(state[key]) == int(ref), key
            continue
        err = rel_err(state[key], ref)
        assert err < TOL, (key, err)
        worst = max(worst, err)
    return worst


DROPOUT = [pytest.param(False, id="dropout_off"), pytest.param(True, id="dropout_on")]
# The head at small widths on the tiny stub backbone (channels / 32).
TINY_MMSEG = {"low": 16, "high": 32, "channels": 16, "project": 8, "aux": 8}
TINY_OFFICIAL = {"low": 16, "high": 32, "channels": 16, "key": 8, "value": 8, "aux": 16}


def _tiny_overrides(w: dict[str, int]) -> list[str]:
    return [
        "tiny",
        f"model.decode_head.in_channels=[{w['low']},{w['high']}]",
        f"+model.decode_head.fusion_channels={w['high']}",
        f"model.decode_head.channels={w['channels']}",
        f"model.decode_head.key_channels={w.get('project', w.get('key'))}",
        f"model.decode_head.value_channels={w.get('project', w.get('value'))}",
        f"model.aux_head.in_channels={w['low']}",
        f"model.aux_head.channels={w['aux']}",
    ]


@pytest.mark.parametrize("dropout", DROPOUT)
def test_cityscapes_ann_trains_as_mmseg(tmp_path: Path, dropout: bool) -> None:
    """experiment=cityscapes_ann (its optimizer, scheduler, losses and head
    layout) against mmseg's recipe, 3 steps, with the head at 1/32 width on a
    tiny backbone (the full R-50: the slow test below)."""
    ref = mmseg_ann.EncoderDecoder(50, 19, backbone=TinyBackbone(), widths=TINY_MMSEG)
    check_parity("mmseg", randomise(ref), tmp_path, _tiny_overrides(TINY_MMSEG), dropout)


@pytest.mark.parametrize("dropout", DROPOUT)
def test_official_trains_as_the_authors(tmp_path: Path, dropout: bool) -> None:
    """experiment=cityscapes_ann_official against the authors' code, 3 steps,
    head at 1/32 width on a tiny backbone.

    The authors' head convs before a BN carry a bias: BN in training removes
    it, so it gets no gradient, but weight decay shrinks it and the running
    mean follows it (about 1e-7 relative over 3 steps): a parameter this
    project's layout does not have (folded into the mean on conversion). The
    reference starts with those biases at zero, where they stay."""
    ref = official_ann.AsymmetricNonLocalNetwork(19, backbone=TinyBackbone(), widths=TINY_OFFICIAL)
    ref = randomise(ref, seed=1, conv_bias_before_bn=False)
    check_parity("official", ref, tmp_path, _tiny_overrides(TINY_OFFICIAL), dropout)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("dropout", DROPOUT)
def test_full_size_models_train_as_the_references(tmp_path: Path, dropout: bool) -> None:
    """The full R-50-D8 cityscapes_ann and the authors' R-101 (as
    cityscapes_ann_official builds it) against the references, 3 steps on a
    2×41×57 batch in float64."""
    mm = randomise(mmseg_ann.EncoderDecoder(depth=50, num_classes=19))
    check_parity("mmseg", mm, tmp_path / "mmseg", [], dropout)
    del mm
    off = official_ann.AsymmetricNonLocalNetwork(num_classes=19, depth=101)
    off = randomise(off, seed=1, conv_bias_before_bn=False)
    check_parity("official", off, tmp_path / "official", [], dropout)


# -- the defaults each recipe trains with -------------------------------------------


def _experiments() -> list[str]:
    root = CONFIG_DIR / "experiment"
    names = [p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml")]
    return sorted(names)


def _training_defaults(experiment: str) -> dict:
    model = compose_cfg([f"experiment={experiment}"]).model
    head, loss = model.decode_head, model.loss
    aux_loss = model.get("aux_loss")
    return {
        "head": head._target_.rsplit(".", 1)[-1],
        "dropout": (head.get("block_dropout"), head.get("fusion_dropout"), head.get("dropout")),
        "qk_bn_updates": head.get("query_key_bn_updates"),
        "aux_head": (model.aux_head.channels, model.aux_head.dropout),
        "loss": loss._target_.rsplit(".", 1)[-1],
        "average": loss.get("average"),
        "rule": loss.get("rule"),
        "aux_loss": None if aux_loss is None else OmegaConf.to_container(aux_loss, resolve=True),
        "aux_head_first": model.get("aux_head_first", False),
        "aux_weight": model.aux_weight,
    }


@pytest.mark.parametrize("experiment", _experiments())
def test_each_recipe_trains_as_its_reference(experiment: str) -> None:
    """mmseg recipes: its ANNHead dropout layout (none in the blocks, 0.1 after
    AFNB and before the classifier), its FCN aux head (256, dropout 0.1) where
    the recipe has mmseg's aux head, CrossEntropyLoss
    averaged over all pixels for both heads, aux 0.4. The authors' recipes:
    Dropout2d(0.05) in the blocks only, OHEM by their rule on the main output,
    the weighted-mean cross-entropy on the aux output (computed first).
    The ablations keep the authors' losses (their parent recipe) and take the
    decode head of model/decode_head (mmseg's layout)."""
    got = _training_defaults(experiment)
    assert got["aux_weight"] == 0.4
    if got["head"] == "ANNHead":
        assert got["qk_bn_updates"] == 2
    if experiment in OFFICIAL:
        assert got["dropout"] == (0.05, 0.0, 0.0)
        assert got["aux_head"] == (512, 0.05) and got["aux_head_first"] is True
        assert (got["loss"], got["rule"]) == ("OhemCrossEntropyLoss", "authors")
        aux = got["aux_loss"]
        assert aux["_target_"].endswith("CrossEntropyLoss") and aux["average"] == "weighted"
        weights = CITYSCAPES_WEIGHTS if experiment.startswith("cityscapes") else None
        assert aux["class_weight"] == weights
        return
    if experiment.startswith("ablation/"):
        assert (got["loss"], got["rule"]) == ("OhemCrossEntropyLoss", "authors")
        assert got["aux_loss"]["average"] == "weighted"
    else:
        assert got["aux_head_first"] is False
        assert (got["loss"], got["average"], got["aux_loss"]) == ("CrossEntropyLoss", "all", None)
    if got["head"] == "ANNHead":
        assert got["dropout"] == (0.0, 0.1, 0.1)
    if got["aux_head"][0] == 256:  # mmseg's FCN aux head (its checkpoints' layout)
        assert got["aux_head"][1] == 0.1
