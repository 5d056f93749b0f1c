"""torch.distributed helpers: env:// initialisation, rank queries, reductions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from ann.errors import RankFailure
from ann.launch_env import cuda_index, launch_env


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return get_rank() == 0


def init_distributed(timeout_min: float = 30.0) -> torch.device:
    """Joins the process group the launcher describes: torchrun's variables,
    else a submitit job's or an srun step's (precedence: :mod:`ann.launch_env`).

    Uses nccl with one GPU per task when CUDA is present (device 0 when the
    task sees one GPU, its local rank when it sees the node's), gloo on CPU.
    A collective that waits longer than ``timeout_min`` minutes for another
    rank fails instead of hanging. Returns the device this process computes
    on. Alone it starts nothing and returns cuda:0 or cpu.
    """
    where = launch_env()
    cuda = torch.cuda.is_available()
    device = torch.device("cpu")
    if cuda:
        device = torch.device("cuda", cuda_index(where.local_rank, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    if where.world_size > 1 and not is_dist():
        where.export()
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            init_method="env://",
            timeout=timedelta(minutes=timeout_min),
        )
    return device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sums ``tensor`` over ranks in place (no-op in one process); returns it."""
    if is_dist():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: object, src: int = 0) -> object:
    """Sends a picklable object from ``src`` to every rank."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


_PROGRESS = "ann/progress/"
# What gloo and NCCL say when a peer is gone or silent.
_COMM_MARKERS = (
    "Connection closed by peer",
    "Connection reset by peer",
    "Timed out waiting",
    "timed out",
    "NCCL",
    "Broken pipe",
)


def report_progress(step: int) -> None:
    """Records this rank's last started ``step`` in the process group's store,
    so that a rank that gives up waiting can name the one that fell behind."""
    if is_dist():
        dist.distributed_c10d._get_default_store().set(f"{_PROGRESS}{get_rank()}", str(step))


def is_comm_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because a peer died or stalled."""
    if not is_dist() or not isinstance(exc, RuntimeError):
        return False
    backend_error = getattr(dist, "DistBackendError", ())
    return isinstance(exc, backend_error) or any(m in str(exc) for m in _COMM_MARKERS)


def describe_comm_failure(exc: BaseException, timeout_key: str) -> str:
    """One line: which rank gave up, on which rank(s), and why (a closed
    connection: that rank exited or crashed; a timeout: it stalled)."""
    me, world = get_rank(), get_world_size()
    progress: dict[int, int] = {}
    try:
        store = dist.distributed_c10d._get_default_store()
        for rank in range(world):
            if store.check([f"{_PROGRESS}{rank}"]):
                progress[rank] = int(store.get(f"{_PROGRESS}{rank}"))
    except Exception:  # the store may have gone with the failed rank
        pass
    others = [r for r in range(world) if r != me]
    mine = progress.get(me)
    behind = [r for r in others if mine is not None and progress.get(r, -1) < mine] or others
    closed = any(m in str(exc) for m in ("closed by peer", "reset by peer", "Broken pipe"))
    why = (
        "its connection closed: it exited or crashed"
        if closed
        else f"no answer within {timeout_key}: it stalled or died"
    )
    where = ", ".join(
        f"rank {r} at step {progress[r]}" if r in progress else f"rank {r}" for r in behind
    )
    at = f" at step {mine}" if mine is not None else ""
    return (
        f"distributed: rank {me}{at} stopped waiting for {where}; {why}. See that rank's "
        f"output above; if a step legitimately takes longer, raise {timeout_key}"
    )


_broken = False


@contextmanager
def rank_failures(timeout_key: str) -> Iterator[None]:
    """Turns a collective that failed on a dead or stalled peer into a
    one-line :class:`RankFailure` (see :func:`describe_comm_failure`)."""
    global _broken
    try:
        yield
    except RuntimeError as exc:
        if not is_comm_failure(exc):
            raise
        _broken = True
        raise RankFailure(describe_comm_failure(exc, timeout_key)) from None


def cleanup() -> None:
    """Leaves the process group, unless a peer failed (tearing down a broken
    group can block)."""
    if is_dist() and not _broken:
        dist.destroy_process_group()
