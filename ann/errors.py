"""Errors a user can cause; entry points print them as one line and exit non-zero."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user: a config key, a file, a checkpoint.

    A DataLoader worker re-raises an error in the main process as
    ``type(exc)("Caught X in DataLoader worker process N.\\nOriginal Traceback
    ...")``; the constructor keeps only the original one-line message, so
    that the entry points can still print one line.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (_strip_worker_traceback(args[0], type(self).__name__),)
        super().__init__(*args)


def _strip_worker_traceback(msg: str, name: str) -> str:
    """The original message from a worker's "Caught ... Original Traceback" text."""
    if not (msg.startswith("Caught ") and "\nOriginal Traceback" in msg):
        return msg
    marker = f"{name}: "
    lines = msg.rstrip().splitlines()
    # The traceback ends with "module.Name: message" (the message may span lines).
    for i in range(len(lines) - 1, -1, -1):
        if marker in lines[i]:
            first = lines[i].split(marker, 1)[1]
            return "\n".join([first, *lines[i + 1 :]])
    return lines[-1]


class DataError(UserError):
    """A dataset file or folder is missing or malformed."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable or does not fit the model."""


class UnreadableCheckpointError(CheckpointError):
    """A weights file torch cannot read: torn, damaged or not a weights file."""


class UnsafeCheckpointError(CheckpointError):
    """A weights file holds Python objects besides tensors, which could run
    code when loaded: refused for safety, never skipped over."""


class CheckpointSaveError(CheckpointError):
    """A checkpoint could not be written (a full disk, a read-only folder);
    the previous checkpoint is left as it was."""


class ConfigError(UserError):
    """A config key is missing or has an unusable value."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class DataLoaderDied(UserError):
    """A DataLoader worker process died (out of memory, a crash in a decoder)."""


class RankFailure(UserError):
    """Another rank of a distributed run died or stalled."""


def exit_2_on_user_error(main: Callable[..., int]) -> Callable[..., int]:
    """For argparse entry points (``main(argv) -> exit status``): a
    :class:`UserError` raised inside is printed as one ``error:`` line on
    stderr and the status is 2. (Hydra entry points: ``ann.cli.friendly_errors``.)"""

    @functools.wraps(main)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return wrapper


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error: ...`` line and exit 2,
    like the user errors of :func:`exit_2_on_user_error`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} ({self.format_usage().strip()})", file=sys.stderr)
        sys.exit(2)
