"""Shared fixtures: config composition and tiny on-disk datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")

torch.set_num_threads(2)


def compose_cfg(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    """Composes configs/<config_name>.yaml with overrides, as the tools do."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides or [])


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic shapes dataset (16 train, 6 val images of 64×64)."""
    from ann.data.synthetic import generate_shapes

    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", 16, 6, size=64, seed=0)


@pytest.fixture(scope="session")
def trained_demo(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of the small demo model trained once per test session
    (6 iterations on the tiny shapes data, validated at 2, 4 and 6): read it,
    never write into it (other tests share it)."""
    from ann.commands.train import train

    out = tmp_path_factory.mktemp("demo_run")
    train(compose_cfg(tiny_train_overrides(shapes_root, out, "trainer.max_iters=6")))
    return out


def tiny_train_overrides(root: Path, out: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long CPU training run of the small model."""
    return [
        "experiment=demo",
        f"dataset.root={root}",
        f"output_dir={out}",
        "dataset.num_train=16",
        "dataset.num_val=6",
        "trainer.max_iters=4",
        "trainer.val_interval=2",
        "trainer.ckpt_interval=2",
        "trainer.log_interval=1",
        "trainer.batch_size=2",
        "trainer.num_workers=0",
        "trainer.num_vis=2",
        "scheduler.warmup_iters=0",
        # fp32, whatever the demo uses: tests compare losses across runs to 1e-5.
        "trainer.amp=false",
        *extra,
    ]


def checkpoint_overrides(root: Path, ckpt: Path, out: Path, *extra: str) -> list[str]:
    """Overrides for tools/eval.py or tools/infer.py with the demo model on
    the tiny shapes data and checkpoint ``ckpt``."""
    return [
        "experiment=demo",
        f"dataset.root={root}",
        "dataset.num_train=16",
        "dataset.num_val=6",
        f"checkpoint={ckpt}",
        f"output_dir={out}",
        *extra,
    ]
