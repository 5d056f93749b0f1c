"""torch.distributed helpers: env:// initialisation, rank queries, reductions."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return get_rank() == 0


def init_distributed() -> torch.device:
    """Joins the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK).

    Uses nccl with one GPU per local rank when CUDA is present, gloo on CPU.
    Returns the device this process computes on. Without torchrun's variables
    it starts nothing and returns cuda:0 or cpu.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not is_dist():
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            init_method="env://",
            timeout=timedelta(minutes=30),
        )
    return device


def barrier() -> None:
    if is_dist():
        dist.barrier()


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


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()
