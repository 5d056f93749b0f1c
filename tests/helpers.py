"""Running the entry points as real processes (plain python or torchrun)."""

from __future__ import annotations

import os
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
    return subprocess.run(
        cmd, env=tool_env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
