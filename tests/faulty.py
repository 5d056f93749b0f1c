"""Datasets that misbehave on purpose: workers that die, ranks that stall or
exit, and a dataset that uses OpenCV's thread pool. Importable by DataLoader
workers and tool subprocesses (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import get_worker_info

from ann.data.synthetic import ShapesDataset


class FaultyShapes(ShapesDataset):
    """The shapes data; its ``die_on``-th item, counted over all processes
    with a file at ``counter`` (one byte per item), ends the process that
    reads it: ``how`` is a signal name (SIGKILL as the OOM killer sends,
    SIGSEGV as a crashing decoder), ``exit`` (a clean early exit) or
    ``stall`` (sleeps ``stall_s`` first). Only DataLoader workers count and
    die, unless ``workers_only`` is false; with ``rank`` set, only that
    distributed rank (env RANK) does."""

    def __init__(
        self,
        *args: object,
        counter: str,
        die_on: int,
        how: str = "SIGKILL",
        rank: int | None = None,
        stall_s: float = 30.0,
        workers_only: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.counter, self.die_on, self.how = Path(counter), die_on, how
        self.rank, self.stall_s, self.workers_only = rank, stall_s, workers_only

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        in_worker = get_worker_info() is not None or not self.workers_only
        if in_worker and (self.rank is None or int(os.environ.get("RANK", 0)) == self.rank):
            # The offset after our own O_APPEND write is this item's count; the
            # file's size could already include a concurrent worker's byte.
            fd = os.open(self.counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, b".")
                count = os.lseek(fd, 0, os.SEEK_CUR)
            finally:
                os.close(fd)
            if count == self.die_on:
                self._die()
        return super().__getitem__(index)

    def _die(self) -> None:
        if self.how == "exit":
            os._exit(0)
        if self.how == "stall":
            time.sleep(self.stall_s)
            os._exit(0)
        os.kill(os.getpid(), getattr(signal, self.how))


class RunsCode:
    """Unpickling this calls a function (touching ``marker``), as a malicious
    checkpoint does; a safe loader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


class OpenCVResize:
    """Items that upscale a full-HD image with OpenCV: enough work that
    OpenCV runs it on its thread pool."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        cv2.setNumThreads(1)  # what a worker that manages its threads does
        image = np.zeros((1024, 2048, 3), np.uint8)
        return int(cv2.resize(image, (4096, 2048)).shape[0]) + index
