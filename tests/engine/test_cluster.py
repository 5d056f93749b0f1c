"""SLURM and submitit: where ranks come from, which GPU a task takes, and
what a preemption signal does."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from ann.errors import ConfigError
from ann.launch_env import PORT_RANGE, cuda_index, launch_env, port_for_job
from helpers import compose_cfg, tiny_train_overrides

_LAUNCH_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SUBMITIT_EXECUTOR",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in [*_LAUNCH_VARS, *(k for k in os.environ if k.startswith("SLURM_"))]:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _slurm(
    mp: pytest.MonkeyPatch,
    nodelist: str,
    ntasks: int,
    nnodes: int,
    procid: int,
    localid: int,
    job: str = "4242",
) -> None:
    for key, value in {
        "SLURM_JOB_ID": job,
        "SLURM_NTASKS": ntasks,
        "SLURM_JOB_NUM_NODES": nnodes,
        "SLURM_NODEID": procid // (ntasks // nnodes),
        "SLURM_PROCID": procid,
        "SLURM_LOCALID": localid,
        "SLURM_JOB_NODELIST": nodelist,
    }.items():
        mp.setenv(key, str(value))


@pytest.mark.parametrize(
    ("case", "nodelist", "ntasks", "nnodes", "procid", "localid", "master", "visible", "gpu"),
    [
        # One node, 8 tasks, every task sees the node's 8 GPUs.
        ("single-node", "gpu-a17", 8, 1, 5, 5, "gpu-a17", 8, 5),
        # Two nodes x 8 tasks: global rank 13 is local rank 5 on the second node.
        ("multi-node", "gpu-a[07-08]", 16, 2, 13, 5, "gpu-a07", 8, 5),
        # --gpus-per-task=1: each task sees exactly one GPU, always device 0.
        ("one-gpu-per-task", "node[003,011-012]", 12, 3, 7, 3, "node003", 1, 0),
    ],
)
def test_slurm_variables_map_to_ranks(
    clean_env: pytest.MonkeyPatch,
    case: str,
    nodelist: str,
    ntasks: int,
    nnodes: int,
    procid: int,
    localid: int,
    master: str,
    visible: int,
    gpu: int,
) -> None:
    pytest.importorskip("submitit")
    _slurm(clean_env, nodelist, ntasks, nnodes, procid, localid)
    for executor in ("", "slurm"):  # an srun step, then a submitit job
        if executor:
            clean_env.setenv("SUBMITIT_EXECUTOR", executor)
        env = launch_env()
        assert env.source == ("submitit" if executor else "slurm")
        assert (env.rank, env.local_rank, env.world_size) == (procid, localid, ntasks)
        assert env.local_world_size == ntasks // nnodes
        assert env.master_addr == master
        assert env.master_port == port_for_job("4242")
        assert cuda_index(env.local_rank, visible) == gpu


def test_precedence_and_port(clean_env: pytest.MonkeyPatch) -> None:
    pytest.importorskip("submitit")
    assert launch_env().source == "single"
    _slurm(clean_env, "n1", 1, 1, 0, 0)  # one task (sbatch script, salloc shell): alone
    assert launch_env().source == "single"
    _slurm(clean_env, "n[1-2]", 2, 2, 1, 0)
    low, high = PORT_RANGE
    assert low <= launch_env().master_port < high
    assert port_for_job("4242") != port_for_job("4243")
    clean_env.setenv("MASTER_PORT", "12345")
    assert launch_env().master_port == 12345
    # torchrun inside a SLURM allocation: torchrun's variables win.
    for key, value in {"RANK": 3, "WORLD_SIZE": 4, "LOCAL_RANK": 1, "MASTER_ADDR": "h"}.items():
        clean_env.setenv(key, str(value))
    env = launch_env()
    assert (env.source, env.rank, env.world_size, env.local_rank) == ("torchrun", 3, 4, 1)
    with pytest.raises(ConfigError, match="only 2 GPU"):
        cuda_index(5, 2)


def test_usr2_saves_last_and_hands_on_to_submitit(
    shapes_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLURM's USR2 before preemption: the trainer finishes the iteration,
    saves last.pth and then calls the handler installed before it
    (submitit's requeue); the requeued run resumes from that file."""
    from ann.commands.train import train
    from ann.engine import trainer as trainer_mod

    calls: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    step = trainer_mod.Trainer.train_step

    def step_then_signal(self, data_iter):
        out = step(self, data_iter)
        if self.state.optimizer.state and not calls and self.state.start_iter == 0:
            os.kill(os.getpid(), signal.SIGUSR2)  # during iteration 1
        return out

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", step_then_signal)
    out = tmp_path / "run"
    try:
        train(compose_cfg(tiny_train_overrides(shapes_root, out, "trainer.max_iters=2")))
        assert calls == [signal.SIGUSR2]
        assert torch.load(out / "checkpoints/last.pth", weights_only=True)["iteration"] == 1
        assert "signal received: saved" in (out / "train.log").read_text()
        monkeypatch.undo()
        train(compose_cfg(tiny_train_overrides(shapes_root, out, "trainer.max_iters=2")))
        assert "resumed from" in (out / "train.log").read_text()
        assert torch.load(out / "checkpoints/last.pth", weights_only=True)["iteration"] == 2
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_example_slurm_launcher_config_composes() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_cfg(["hydra/launcher=slurm", "experiment=cityscapes_ann"], hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node == 4  # x batch 2 = 8
    assert launcher.signal_delay_s > 0 and launcher.setup
