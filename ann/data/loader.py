"""DataLoaders whose worker processes start clean, and worker deaths as one-line errors.

Why not fork: a worker forked from a process whose OpenCV (or OpenMP) thread
pool is already running inherits the pool's locks but none of its threads,
and hangs the first time it touches the pool (seen as a validation that never
ends: the main process had resized an image for the prediction grid, or ran
the training transforms itself with ``num_workers=0``). Workers therefore
start from a fork server: a clean process started once, with torch, OpenCV
and albumentations imported but never used, from which every worker forks in
milliseconds. Each worker then pins OpenCV to one thread, since the workers
already parallelise over samples.
"""

from __future__ import annotations

import multiprocessing
import pickle
import re
import signal
import sys
import time
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cv2
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ann.errors import ConfigError, DataLoaderDied

# What the fork server imports once, so that a worker's start is a fork, not an import.
PRELOAD = ("__main__", "torch", "cv2", "albumentations", "ann.data.transforms")


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of every DataLoader worker: ``forkserver`` where the
    platform has it (Linux, macOS), else ``spawn``. Neither inherits the
    parent's thread pools."""
    quiet_resource_tracker()
    if "forkserver" in multiprocessing.get_all_start_methods():
        # Takes effect when the server starts (the first loader with workers).
        multiprocessing.set_forkserver_preload(list(PRELOAD))
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


# A worker that dies (SIGKILL, SIGSEGV) leaves its semaphores to multiprocessing's
# resource tracker, which warns about them at exit, after the run's one-line error.
TRACKER_FILTER = "ignore::UserWarning:multiprocessing.resource_tracker"


def quiet_resource_tracker() -> None:
    """Silences the resource tracker's leak warnings. The tracker is a separate
    process started with this interpreter's ``-W`` options, so the filter goes
    into ``sys.warnoptions`` before the first loader with workers starts it."""
    if TRACKER_FILTER not in sys.warnoptions:
        sys.warnoptions.append(TRACKER_FILTER)


def init_worker(worker_id: int) -> None:
    """Runs first in each worker: one OpenCV thread (torch's is already 1)."""
    cv2.setNumThreads(1)


# Iterators with worker processes, so that a dead worker's exit status can be found.
_LIVE: weakref.WeakSet = weakref.WeakSet()


class _Loader(DataLoader):
    """A DataLoader that registers its multi-process iterators in ``_LIVE``."""

    def _get_iterator(self) -> Any:
        try:
            with warnings.catch_warnings():
                # torch's warning suggests fork: the start method this module avoids.
                warnings.filterwarnings("ignore", message="Got pickle error")
                iterator = super()._get_iterator()
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            if self.num_workers == 0 or "pickle" not in str(exc):
                raise
            raise ConfigError(
                f"{type(self.dataset).__name__}: cannot be sent to DataLoader workers "
                f"({exc}); workers start from a fork server, so the dataset and its "
                "transforms must be picklable (no lambdas or local classes: define them at "
                "module level), or set trainer.num_workers=0 / evaluator.num_workers=0"
            ) from None
        if self.num_workers > 0:
            _LIVE.add(iterator)
        return iterator


def build_loader(
    dataset: Dataset,
    batch_size: int = 1,
    num_workers: int = 0,
    sampler: Sampler | None = None,
    pin_memory: bool = False,
    drop_last: bool = False,
    persistent_workers: bool = False,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader over ``dataset`` whose ``num_workers`` workers start from a
    clean fork server (see the module docstring). Batches are those of
    ``dataset`` stacked: e.g. {"image": (B, 3, H, W), "mask": (B, H, W), ...}."""
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra = {
            "multiprocessing_context": worker_context(),
            "worker_init_fn": init_worker,
            "persistent_workers": persistent_workers,
        }
    return _Loader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=generator,
        **extra,
    )


# torch reports a dead worker as "DataLoader worker (pid 123) is killed by
# signal: Killed." or "DataLoader worker (pid(s) 123) exited unexpectedly".
_DEATH = re.compile(r"DataLoader worker \(pid(?:\(s\))? ([\d, ]+)\) (.*)", re.S)
_CAUSES = {
    "Killed": "most likely out of memory (the kernel's OOM killer; see dmesg), or killed "
    "from outside",
    "Segmentation fault": "a crash in native code, e.g. an image decoder on a corrupt file",
    "Bus error": "shared memory (/dev/shm) too small for the batches",
    "Aborted": "a crash in native code (abort)",
    "Terminated": "it was terminated from outside (SIGTERM)",
}


def describe_worker_death(exc: BaseException, loader: str, workers_key: str) -> str | None:
    """One line for a dead DataLoader worker of the ``loader`` ("train", "val",
    "eval") with its likely cause and what to try, or None if ``exc`` is
    something else."""
    match = _DEATH.search(str(exc))
    if match is None:
        return None
    pids, rest = match.group(1).strip(), match.group(2).strip().splitlines()[0]
    how = re.split(r"\.(?:\s|$)", rest)[0]  # the first sentence
    cause = "it exited without an error message (os._exit or sys.exit in dataset code?)"
    signal_name = re.search(r"killed by signal: ([\w ]+)", rest)
    if signal_name:
        name = signal_name.group(1).strip()
        cause = _CAUSES.get(name, f"signal {name}")
        how = f"was killed by {_signal_label(name)}"
    return (
        f"{loader} loader: DataLoader worker (pid {pids}) {how}: {cause}. Try fewer "
        f"workers ({workers_key}=1) or none ({workers_key}=0, which also shows the "
        "original error), or less memory per worker (smaller batch or crop)"
    )


def _signal_label(description: str) -> str:
    """'Killed' -> 'SIGKILL' (the name a user can look up)."""
    for sig in signal.Signals:
        if signal.strsignal(sig) == description:
            return sig.name
    return description


@contextmanager
def worker_deaths(loader: str, workers_key: str) -> Iterator[None]:
    """Turns a dead DataLoader worker inside the block into a one-line
    :class:`DataLoaderDied`; other errors pass unchanged."""
    try:
        yield
    except (RuntimeError, ConnectionError, EOFError) as exc:
        if isinstance(exc, RuntimeError) and _DEATH.search(str(exc)) is None:
            raise
        # A batch in transit from a dying worker breaks its connection first
        # (workers hand tensors over by file descriptor), and torch's own
        # message lacks the signal: look the worker's exit status up.
        death = _dead_worker_error(0.5 if isinstance(exc, RuntimeError) else 5.0) or exc
        line = describe_worker_death(death, loader, workers_key)
        if line is None:
            raise
        raise DataLoaderDied(line) from None


def _dead_worker_error(wait_s: float = 5.0) -> RuntimeError | None:
    """An error in torch's words for a dead worker of a live loader, waiting up
    to ``wait_s`` for its exit status (the fork server reports it, the
    kernel does not: workers are not our children); None if all are alive."""
    deadline = time.monotonic() + wait_s
    while True:
        for iterator in list(_LIVE):
            for worker in getattr(iterator, "_workers", ()):
                code = worker.exitcode
                if code is None:
                    continue
                if code < 0:
                    return RuntimeError(
                        f"DataLoader worker (pid {worker.pid}) is killed by signal: "
                        f"{signal.strsignal(-code)}."
                    )
                return RuntimeError(
                    f"DataLoader worker (pid {worker.pid}) exited unexpectedly with exit code {code}."
                )
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
