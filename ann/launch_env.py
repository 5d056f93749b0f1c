"""Where a process learns its place in a distributed run.

Precedence (the first that applies wins):

1. torchrun (or any launcher that sets ``RANK`` and ``WORLD_SIZE``, plus
   ``MASTER_ADDR``/``MASTER_PORT``): used as is.
2. A submitit job (Hydra's ``submitit_slurm`` or ``submitit_local`` launcher,
   ``SUBMITIT_EXECUTOR`` set): submitit's job environment gives the global
   rank, local rank and task count; the master is the first host of the job's
   node list.
3. A plain ``srun`` step with more than one task (``SLURM_NTASKS`` > 1 and
   ``SLURM_PROCID``): the same from the ``SLURM_*`` variables, read through
   submitit's SLURM environment (it parses ``SLURM_JOB_NODELIST``).
4. Otherwise one process.

In 2 and 3 the port is ``MASTER_PORT`` when set, else derived from the job id
(so every task of a job agrees on it without talking, and two jobs sharing a
node are unlikely to collide).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

from ann.errors import ConfigError

PORT_RANGE = (20000, 60000)


@dataclass(frozen=True)
class LaunchEnv:
    """One process's coordinates: ``source`` is torchrun, submitit, slurm or single."""

    source: str
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    def export(self) -> None:
        """Sets the variables ``init_method="env://"`` reads (and LOCAL_RANK)."""
        os.environ.update(
            MASTER_ADDR=self.master_addr,
            MASTER_PORT=str(self.master_port),
            RANK=str(self.rank),
            WORLD_SIZE=str(self.world_size),
            LOCAL_RANK=str(self.local_rank),
            LOCAL_WORLD_SIZE=str(self.local_world_size),
        )


def port_for_job(job_id: str) -> int:
    """A port in PORT_RANGE chosen by the job id, or ``MASTER_PORT`` when set."""
    if os.environ.get("MASTER_PORT"):
        return int(os.environ["MASTER_PORT"])
    low, high = PORT_RANGE
    return low + zlib.crc32(job_id.encode()) % (high - low)


def _from_job_environment(job_env: object, source: str) -> LaunchEnv:
    nodes = max(int(job_env.num_nodes), 1)
    return LaunchEnv(
        source=source,
        rank=int(job_env.global_rank),
        local_rank=int(job_env.local_rank),
        world_size=int(job_env.num_tasks),
        local_world_size=max(int(job_env.num_tasks) // nodes, 1),
        master_addr=str(job_env.hostnames[0]),
        master_port=port_for_job(str(job_env.job_id)),
    )


def _submitit() -> object:
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "this process runs under SLURM with several tasks, which needs submitit: "
            "pip install -e '.[cluster]' (or launch with torchrun)"
        ) from None
    return submitit


def launch_env() -> LaunchEnv:
    """This process's rank, local rank, world size and master, by the precedence above."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return LaunchEnv(
            source="torchrun",
            rank=int(env["RANK"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            world_size=int(env["WORLD_SIZE"]),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
        )
    if env.get("SUBMITIT_EXECUTOR"):
        return _from_job_environment(_submitit().JobEnvironment(), "submitit")
    if int(env.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in env:
        _submitit()
        from submitit.slurm.slurm import SlurmJobEnvironment

        return _from_job_environment(SlurmJobEnvironment(), "slurm")
    return LaunchEnv(source="single")


def cuda_index(local_rank: int, visible: int) -> int:
    """The CUDA device for a task: 0 when the task sees one GPU (SLURM's
    ``--gpus-per-task`` or a launcher that sets CUDA_VISIBLE_DEVICES per task),
    its local rank when it sees all of the node's GPUs."""
    if visible == 1:
        return 0
    if local_rank >= visible:
        raise ConfigError(
            f"local rank {local_rank} but only {visible} GPU(s) visible to this task: "
            "start one task per GPU (hydra.launcher.tasks_per_node = gpus_per_node)"
        )
    return local_rank
