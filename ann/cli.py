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


class SweepJobFailed(Exception):
    """A job of a ``-m`` sweep stopped on a user error (already printed)."""


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _stop(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    if _in_sweep():
        # An exception, not an exit: Hydra's launchers record the failed job and
        # run the sweep's other jobs (other seeds), then report the failure.
        raise SweepJobFailed(message) from None
    sys.exit(2)


def friendly_errors(main: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Prints a user error (bad file, key or checkpoint) as one line on stderr
    and exits with status 2 instead of a traceback (in a ``-m`` sweep the job
    fails and the other jobs still run)."""

    @functools.wraps(main)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return main(cfg)
        except (UserError, OmegaConfBaseException) as exc:
            _stop(str(exc))
        except InstantiationException as exc:
            # hydra.utils.instantiate wraps what a constructor raises (e.g. a
            # dataset's DataError for a missing root): report the user error itself.
            if isinstance(exc.__cause__, UserError):
                _stop(str(exc.__cause__))
            raise

    return wrapper


def set_output_dir(cfg: DictConfig) -> None:
    """Points ``cfg.output_dir`` at the directory Hydra created for this run,
    so that ``hydra.run.dir=...`` and ``output_dir=...`` both work."""
    from hydra.core.hydra_config import HydraConfig

    cfg.output_dir = HydraConfig.get().runtime.output_dir
