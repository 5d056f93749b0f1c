"""Logging to the console (through tqdm) and to a run's log file, rank 0 only."""

from __future__ import annotations

import logging
import sys
from logging.handlers import MemoryHandler
from pathlib import Path

from tqdm import tqdm

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _TqdmHandler(logging.StreamHandler):
    """Writes through tqdm so log lines do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise
            self.handleError(record)


def setup_logging(log_file: Path | None, main_process: bool = True, hold: bool = False) -> None:
    """Routes the ``ann`` loggers to the console and ``log_file`` (main process
    only; other ranks log warnings and errors to the console). ``hold``: keep
    the records in memory for :func:`attach_log_file`, so that a run's log
    file is only created once its start has succeeded."""
    logger = logging.getLogger("ann")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.INFO if main_process else logging.WARNING)
    logger.propagate = False
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(console)
    if log_file is not None and main_process:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(file_handler)
    if hold:
        # No target and no flush level: it only buffers, until attach_log_file.
        logger.addHandler(MemoryHandler(capacity=1 << 30, flushLevel=logging.CRITICAL + 1))


def attach_log_file(log_file: Path, main_process: bool = True) -> None:
    """Opens ``log_file`` (appending) for the ``ann`` loggers and writes into
    it the records held since :func:`setup_logging` (``hold=True``)."""
    logger = logging.getLogger("ann")
    held = [h for h in logger.handlers if isinstance(h, MemoryHandler)]
    for handler in held:
        logger.removeHandler(handler)
    if not main_process:
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter(FORMAT))
    for handler in held:
        for record in handler.buffer:
            file_handler.handle(record)
        handler.close()
    logger.addHandler(file_handler)
