"""Every experiment composes, and the DESIGN §5 keys work as overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import CONFIG_DIR, compose_cfg

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


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
