"""What the Hydra entry points in tools/ share: user errors as one line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from ann.errors import UserError


def friendly_errors(main: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Prints a user error (bad file, key or checkpoint) as one line on stderr
    and exits with status 2 instead of a traceback."""

    @functools.wraps(main)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return main(cfg)
        except Exception as exc:
            user = user_error(exc)
            if user is None:
                raise
            print(f"error: {user}", file=sys.stderr)
            sys.exit(2)
        except InstantiationException as exc:
            # hydra.utils.instantiate wraps what a constructor raises (e.g. a
            # dataset's DataError for a missing root): report the user error itself.
            if isinstance(exc.__cause__, UserError):
                print(f"error: {exc.__cause__}", file=sys.stderr)
                sys.exit(2)
            raise

    return wrapper


def user_error(exc: BaseException) -> BaseException | None:
    """The user error behind ``exc``, if any: ``exc`` itself or its cause, since
    ``hydra.utils.instantiate`` wraps what a ``_target_``'s constructor raises
    (e.g. a ConfigError from the evaluator) in an InstantiationException."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, UserError | OmegaConfBaseException):
            return exc
        exc, seen = exc.__cause__, seen + 1
    return None


def set_output_dir(cfg: DictConfig) -> None:
    """Points ``cfg.output_dir`` at the directory Hydra created for this run,
    so that ``hydra.run.dir=...`` and ``output_dir=...`` both work."""
    from hydra.core.hydra_config import HydraConfig

    cfg.output_dir = HydraConfig.get().runtime.output_dir
