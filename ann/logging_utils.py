"""Logging to the console (through tqdm) and to a run's log file, rank 0 only."""

from __future__ import annotations

import logging
import sys
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


def setup_logging(log_file: Path | None, main_process: bool = True) -> None:
    """Routes the ``ann`` loggers to the console and ``log_file`` (main process
    only; other ranks log warnings and errors to the console)."""
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
