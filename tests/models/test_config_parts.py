"""Model configs composed from parts (model/backbone, model/decode_head,
model/aux_head, model/loss) and the ablation experiments built on them."""

from __future__ import annotations

import functools
import json
import re

import pytest
import torch
from config_snapshot import SNAPSHOT, resolved
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ann.config.schema import check_config
from ann.errors import ConfigError
from ann.models.backbones import ResNetBackbone
from ann.models.heads import AFNB, APNB, ANNHead, FCNHead, NonLocal2d
from helpers import CONFIG_DIR, ROOT, compose_cfg
from tiny_models import TinyBackbone

ABLATIONS = sorted(p.stem for p in (CONFIG_DIR / "experiment" / "ablation").glob("*.yaml"))


def test_resolved_configs_unchanged() -> None:
    """Guards every experiment's and model's resolved config for train, eval,
    infer and export: reorganising the config files (inheritance, groups,
    interpolation) must not change a value a run trains or evaluates with.
    tests/snapshots/resolved_configs.json holds them; regenerate it with
    ``python tests/config_snapshot.py`` only for an intended change."""
    snapshot = json.loads(SNAPSHOT.read_text())
    cases = [(key.split("|")[0], [key.split("|")[1]]) for key in snapshot]
    changed = {}
    for (key, before), now in zip(snapshot.items(), resolved(cases), strict=True):
        diff = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        if diff:
            changed[key] = diff
    assert not changed, f"resolved configs changed (top-level keys): {changed}"


PARTS = {"loss", "backbone", "decode_head", "aux_head"}


def test_models_share_one_body() -> None:
    """model/encoder_decoder.yaml is the one body; every model file is that
    body (or another model) plus part overrides and keys of its parts, never
    the body's own keys again."""
    body = OmegaConf.load(CONFIG_DIR / "model" / "encoder_decoder.yaml")
    assert {next(iter(d)) for d in body.defaults if not isinstance(d, str)} == PARTS
    for path in sorted((CONFIG_DIR / "model").glob("*.yaml")):
        if path.stem == "encoder_decoder":
            continue
        cfg = OmegaConf.load(path)
        bases = [d for d in cfg.defaults if isinstance(d, str) and d != "_self_"]
        assert len(bases) == 1, path.stem
        overrides = {
            next(iter(d)).removeprefix("override ") for d in cfg.defaults if not isinstance(d, str)
        }
        assert overrides <= PARTS, path.stem
        assert set(cfg) <= PARTS | {"defaults"}, path.stem


def test_resnet101_is_resnet50_with_another_depth() -> None:
    cfg = OmegaConf.load(CONFIG_DIR / "model" / "backbone" / "resnet101.yaml")
    assert list(cfg.defaults) == ["resnet50", "_self_"]
    assert set(cfg) == {"defaults", "depth"}


def test_experiments_take_their_schedule_from_the_group() -> None:
    """Every schedule file (configs/schedule/) is used, and an experiment
    states max_iters and intervals only for a schedule the group lacks."""
    schedules = {
        p.stem: OmegaConf.load(p).trainer for p in (CONFIG_DIR / "schedule").glob("*.yaml")
    }
    assert sorted(schedules) == ["160k", "20k", "40k", "80k"]
    given = {(t.max_iters, t.val_interval, t.ckpt_interval) for t in schedules.values()}
    used = set()
    for path in sorted((CONFIG_DIR / "experiment").rglob("*.yaml")):
        own = OmegaConf.load(path)
        for entry in own.get("defaults", []):
            if not isinstance(entry, str):
                used.update(v for k, v in entry.items() if k.endswith("/schedule"))
        trainer = own.get("trainer", {})
        stated = {"max_iters", "val_interval", "ckpt_interval"} & set(trainer)
        if stated:
            assert stated == {"max_iters", "val_interval", "ckpt_interval"}, path.stem
            assert (trainer.max_iters, trainer.val_interval, trainer.ckpt_interval) not in given, (
                path.stem
            )
    assert used == set(schedules)
    cfg = compose_cfg(["experiment=voc_aug_ann_r101_40k"])
    assert (cfg.trainer.max_iters, cfg.trainer.val_interval, cfg.optimizer.lr) == (
        40000,
        4000,
        0.01,
    )


def test_heads_read_the_backbone_channels() -> None:
    """The heads' input channels follow model.backbone.out_channels: ANN R-50
    with a ResNet-18 backbone gets heads for its 256/512 channels."""
    cfg = compose_cfg(["model/backbone=resnet18"])
    assert cfg.model.decode_head.in_channels == [256, 512]
    assert cfg.model.aux_head.in_channels == 256
    cfg = compose_cfg(["model=fcn_r50", "model/backbone=resnet18"])
    assert cfg.model.decode_head.in_channels == 512
    narrow = compose_cfg(["experiment=demo"]).model
    assert narrow.decode_head.in_channels == [96, 192] and narrow.aux_head.in_channels == 96
    args = {k: v for k, v in narrow.backbone.items() if k != "_target_"}
    args["base_channels"] = 32  # out_channels left at 24's: refused by name
    with pytest.raises(ConfigError, match=r"model.backbone.out_channels must be \[32, 64"):
        ResNetBackbone(**args)


def test_one_override_per_part() -> None:
    """A part is one group override; an ablation axis one key override."""
    cfg = compose_cfg(
        ["model=ann_r101", "model/decode_head=apnb_only", "model.decode_head.normalization=rescale"]
    )
    head = cfg.model.decode_head
    assert (head.fusion, head.context, head.normalization) == ("none", "apnb", "rescale")
    assert cfg.model.backbone.depth == 101
    cfg = compose_cfg(["model/backbone=resnet101", "model/loss=ohem", "~model/aux_head"])
    assert cfg.model.backbone.depth == 101 and "aux_head" not in cfg.model
    assert cfg.model.loss._target_.endswith("OhemCrossEntropyLoss")
    # The legacy head files keep their keys; ``++`` adds an axis to them.
    cfg = compose_cfg(["++model.decode_head.output=residual"])
    assert cfg.model.decode_head.output == "residual"


def _narrow(model_cfg: DictConfig) -> None:
    """The heads at 1/64 of their widths (res4 16, res5 32 channels): the
    same composition and options, a fraction of the weights (the full widths
    run in test_ablation_builds_the_r101 and the slow test)."""
    head, aux = model_cfg.decode_head, model_cfg.aux_head
    if head._target_.endswith("ANNHead"):
        head.update(in_channels=[16, 32], channels=8, key_channels=4, value_channels=4)
    else:
        head.update(in_channels=32, channels=8)
    aux.update(in_channels=16, channels=8)


@functools.cache
def _official() -> DictConfig:
    return compose_cfg(["experiment=cityscapes_ann_official"])


EXPECTED_HEAD = {
    "cs_r101_fcn": (FCNHead, None, None),
    "cs_r101_nonlocal": (ANNHead, type(None), NonLocal2d),
    "cs_r101_dense_fusion": (ANNHead, AFNB, type(None)),
    "cs_r101_afnb": (ANNHead, AFNB, type(None)),
    "cs_r101_dense_both": (ANNHead, AFNB, NonLocal2d),
}


def _check_head(name: str, head: nn.Module) -> None:
    kind, fusion, context = EXPECTED_HEAD.get(
        name, (ANNHead, type(None) if "apnb" in name else AFNB, APNB)
    )
    assert isinstance(head, kind), name
    if kind is ANNHead:
        assert isinstance(head.fusion, fusion) and isinstance(head.context, context), name


@pytest.mark.parametrize("experiment", ABLATIONS)
def test_ablation_experiment_composes_builds_and_trains(experiment: str) -> None:
    """Each ablation row composes (train and eval), fits the schema, is the
    authors' R-101 recipe but for the decode head, and its model runs a
    forward/backward pass (backbone stubbed; the R-101 build: next test)."""
    cfg = compose_cfg([f"experiment=ablation/{experiment}"])
    check_config(cfg)
    eval_cfg = compose_cfg([f"experiment=ablation/{experiment}", "checkpoint=x.pth"], "eval")
    check_config(eval_cfg, ("model", "dataset", "evaluator"))
    official = _official()
    assert cfg.name == f"ablation/{experiment}"
    for key in ("dataset", "optimizer", "scheduler", "trainer", "evaluator"):
        assert cfg[key] == official[key], key
    for key in ("backbone", "aux_head", "loss", "align_corners", "aux_weight"):
        assert cfg.model[key] == official.model[key], key
    _narrow(cfg.model)
    _forward_backward(experiment, instantiate(cfg.model, backbone=TinyBackbone()), 1)


def _forward_backward(experiment: str, model: nn.Module, batch: int) -> None:
    """A training step's forward, both losses and backward at batch×3×65×65."""
    _check_head(experiment, model.decode_head)
    torch.manual_seed(0)
    out = model.train()(torch.randn(batch, 3, 65, 65))
    assert out["out"].shape == out["aux"].shape == (batch, 19, 65, 65)
    model.compute_loss(out, torch.randint(0, 19, (batch, 65, 65)))["loss"].backward()
    assert model.decode_head.classifier.weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ABLATIONS)
def test_ablation_full_size_forward_backward(experiment: str) -> None:
    """Every ablation row as configured: R-101 and the full-width head."""
    model = instantiate(compose_cfg([f"experiment=ablation/{experiment}"]).model)
    _forward_backward(experiment, model, 2)


def test_ablation_builds_the_r101() -> None:
    """One ablation row as configured: the authors' R-101 (128-wide deep
    stem), from scratch, with the full-width head; an eval forward at
    1×3×33×33 (forward/backward of every row: the slow test below)."""
    cfg = compose_cfg(["experiment=ablation/cs_r101_apnb_n1_3"])
    assert cfg.model.backbone.pretrained is None  # the authors' file: pass it as a path
    model = instantiate(cfg.model).eval()
    assert model.backbone.stem[0].out_channels == 64 and model.backbone.stem[6].out_channels == 128
    assert len(model.backbone.layer3) == 23  # ResNet-101
    assert model.decode_head.context.pool.sizes == (1, 3)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 33, 33)).shape == (1, 19, 33, 33)


def test_docs_sweep_runs_every_ablation() -> None:
    """docs/models.md's ``-m`` line names every experiment/ablation file."""
    text = (ROOT / "docs" / "models.md").read_text()
    match = re.search(r"tools/train\.py -m experiment=(\S+)", text.replace("\\\n", ""))
    assert match, "no sweep line in docs/models.md"
    listed = match.group(1).split(",")
    assert sorted(listed) == [f"ablation/{name}" for name in ABLATIONS]
