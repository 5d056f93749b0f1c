"""Stopping a training run cleanly on SIGTERM, SIGINT or SLURM's SIGUSR2."""

from __future__ import annotations

import signal


class SignalGuard:
    """Turns SIGTERM, SIGINT and SIGUSR2 into a flag checked between iterations.

    SIGUSR2 is what SLURM sends (``--signal=USR2@...``) before preempting or
    timing out a submitit job. After the loop has saved ``last.pth`` the signal
    is handed on to the handler that was installed before (submitit's, which
    requeues the job so that it resumes in the same output directory).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> SignalGuard:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        chained = self._previous.get(signal.SIGUSR2)
        if self.received == signal.SIGUSR2 and callable(chained):
            chained(signal.SIGUSR2, None)
