"""What tests share besides fixtures (those are in conftest.py): composing
the configs as the tools do, the overrides of a seconds-long run of the demo
model, and running the entry points as real processes (plain python or
torchrun). Test files import it by name (``from helpers import compose_cfg``):
tests/ is on pytest's pythonpath and on the tools' PYTHONPATH (``tool_env``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
# Hydra's search path for tests/configs (model=tiny_gn): an override for the tools.
TEST_CONFIGS = f"hydra.searchpath=[file://{ROOT / 'tests' / 'configs'}]"


def compose_cfg(
    overrides: list[str] | None = None, config_name: str = "train", *, hydra: bool = False
) -> DictConfig:
    """Composes configs/<config_name>.yaml with overrides, as the tools do;
    ``hydra``: with the ``hydra`` node (run and sweep folders, launcher)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name, overrides or [], return_hydra_config=hydra)


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


def tool_env() -> dict[str, str]:
    """The environment for tools/ subprocesses: repo and tests importable,
    one thread per process so parallel ranks do not oversubscribe 2 cores."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_tool(
    script: str, overrides: list[str], nproc: int = 0, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Runs tools/<script> with Hydra overrides; ``nproc`` > 0 through torchrun."""
    cmd = [sys.executable]
    if nproc:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += [str(ROOT / "tools" / script), *overrides]
    return run_bounded(cmd, timeout)


def run_bounded(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Runs ``cmd`` in its own process group; past ``timeout`` seconds the
    whole group (DataLoader workers, torchrun's ranks) is killed and
    TimeoutExpired raised, so that a hang fails a test and leaves nothing behind."""
    proc = subprocess.Popen(
        cmd,
        env=env or tool_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
