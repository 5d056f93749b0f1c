"""Shared fixtures: the tiny synthetic dataset and the demo run trained once
per session. Helpers that are not fixtures (compose_cfg, the overrides of a
tiny run, running the tools) are in helpers.py: import them from there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import compose_cfg, tiny_train_overrides

torch.set_num_threads(2)


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
