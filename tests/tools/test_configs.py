"""Every experiment composes, and the contract keys (docs/contracts.md) work as overrides."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from helpers import CONFIG_DIR, compose_cfg

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("config_name", ["train", "eval"])
def test_experiment_composes(experiment: str, config_name: str) -> None:
    overrides = [f"experiment={experiment}"]
    if config_name == "eval":
        overrides.append("checkpoint=x.pth")
    cfg = compose_cfg(overrides, config_name)
    OmegaConf.resolve(cfg)
    assert cfg.model.num_classes == cfg.dataset.num_classes
    assert cfg.name == experiment


def test_contract_keys_override() -> None:
    cfg = compose_cfg(
        [
            "experiment=cityscapes_ann",
            "dataset.root=/data/cityscapes",
            "trainer.max_iters=7",
            "trainer.val_interval=3",
            "trainer.ckpt_interval=5",
            "trainer.batch_size=4",
            "trainer.num_workers=1",
            "trainer.amp=true",
            "trainer.seed=3",
            "trainer.resume=false",
            "optimizer.lr=0.02",
            "optimizer.weight_decay=1e-4",
            "model.backbone.pretrained=null",
            "evaluator.mode=slide",
            "evaluator.crop_size=[769,769]",
            "evaluator.stride=[513,513]",
            "evaluator.scales=[0.75,1.0,1.25]",
            "evaluator.flip=true",
            "evaluator.save_predictions=cityscapes",
        ]
    )
    assert cfg.dataset.train.root == "/data/cityscapes"
    assert cfg.trainer.max_iters == 7 and cfg.trainer.amp is True
    assert cfg.optimizer.lr == 0.02
    assert list(cfg.evaluator.scales) == [0.75, 1.0, 1.25] and cfg.evaluator.flip
    assert cfg.evaluator.mode == "slide" and list(cfg.evaluator.crop_size) == [769, 769]


def test_run_dir_is_stable_per_experiment() -> None:
    cfg = compose_cfg(["experiment=cityscapes_ann"], "train")
    assert cfg.output_dir == "outputs/cityscapes_ann"


def _flat(cfg: object) -> dict[str, object]:
    """A resolved config as ``{"trainer.max_iters": 40000, ...}``."""
    from ann.summary.runs import flatten

    return flatten(OmegaConf.to_container(cfg, resolve=True))


# variant -> (parent, the keys it changes besides name and output_dir)
R101, SCHEDULE = "model.backbone.", "trainer."
VARIANTS = {
    "cityscapes_ann_r101": ("cityscapes_ann", R101),
    "ade20k_ann_r101": ("ade20k_ann", R101),
    "voc_aug_ann_r101": ("voc_aug_ann", R101),
    "cityscapes_ann_r101_769": ("cityscapes_ann_769", R101),
    "cityscapes_ann_769": ("cityscapes_ann", ("model.align_corners", "dataset.", "evaluator.")),
    "pascal_context_60_ann_r50_40k": (
        "pascal_context_ann_r50_40k",
        (
            "dataset.",
            "model.num_classes",
            "model.decode_head.num_classes",
            "model.aux_head.num_classes",
        ),
    ),
    "cityscapes_ann_80k": ("cityscapes_ann", SCHEDULE),
    "cityscapes_ann_r101_80k": ("cityscapes_ann_r101", SCHEDULE),
    "cityscapes_ann_769_80k": ("cityscapes_ann_769", SCHEDULE),
    "cityscapes_ann_r101_769_80k": ("cityscapes_ann_r101_769", SCHEDULE),
    "ade20k_ann_160k": ("ade20k_ann", SCHEDULE),
    "ade20k_ann_r101_160k": ("ade20k_ann_r101", SCHEDULE),
    "voc_aug_ann_40k": ("voc_aug_ann", SCHEDULE),
    "voc_aug_ann_r101_40k": ("voc_aug_ann_r101", SCHEDULE),
    "pascal_context_ann_r50_80k": ("pascal_context_ann_r50_40k", SCHEDULE),
    "pascal_context_60_ann_r50_80k": ("pascal_context_60_ann_r50_40k", SCHEDULE),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_is_its_parent_but_for_the_lines_that_differ(variant: str) -> None:
    """A variant experiment inherits its parent (defaults: [parent, ...]) and
    changes only the backbone, the 769 recipe's keys or the schedule."""
    parent, changes = VARIANTS[variant]
    child_cfg, parent_cfg = (_flat(compose_cfg([f"experiment={e}"])) for e in (variant, parent))
    differ = {
        k for k in child_cfg.keys() | parent_cfg.keys() if child_cfg.get(k) != parent_cfg.get(k)
    }
    assert differ >= {"name", "output_dir"}
    assert all(k.startswith(changes) for k in differ - {"name", "output_dir"}), differ
    if changes == SCHEDULE:
        assert differ - {"name", "output_dir"} == {
            "trainer.max_iters",
            "trainer.val_interval",
            "trainer.ckpt_interval",
        }


@pytest.mark.parametrize("config_name", ["eval", "infer", "export", "browse"])
def test_non_training_commands_compose_no_training_group(config_name: str) -> None:
    """eval, infer, export and browse compose model, dataset, evaluator, paths
    (configs/base.yaml) but no optimizer, scheduler or trainer group: their
    configs hold only the training keys an experiment sets itself (and eval
    its trainer.dist_timeout_min)."""
    extra = {"eval": ["checkpoint=x"], "infer": ["checkpoint=x", "input=x"]}.get(config_name, [])
    bare = compose_cfg(extra, config_name)
    assert "optimizer" not in bare and "scheduler" not in bare
    trainer = OmegaConf.to_container(bare.trainer) if "trainer" in bare else {}
    assert trainer == ({"dist_timeout_min": 30} if config_name == "eval" else {})
    cfg = compose_cfg(["experiment=cityscapes_ann", *extra], config_name)
    trained = compose_cfg(["experiment=cityscapes_ann"])
    assert set(cfg.optimizer) == {"lr", "weight_decay"}
    for key in ("model", "dataset", "evaluator", "paths"):
        assert cfg[key] == trained[key], key


def test_eval_dist_timeout_overrides() -> None:
    cfg = compose_cfg(["checkpoint=x", "trainer.dist_timeout_min=5"], "eval")
    assert cfg.trainer.dist_timeout_min == 5
