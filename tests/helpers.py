"""Running the entry points as real processes (plain python or torchrun)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_CONFIGS = f"hydra.searchpath=[file://{ROOT / 'tests' / 'configs'}]"


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
