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
        except (UserError, OmegaConfBaseException) as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except InstantiationException as exc:
            # hydra.utils.instantiate wraps what a constructor raises (e.g. a
            # dataset's DataError for a missing root): report the user error itself.
            if isinstance(exc.__cause__, UserError):
                print(f"error: {exc.__cause__}", file=sys.stderr)
                sys.exit(2)
            raise

    return wrapper


def set_output_dir(cfg: DictConfig) -> None:
    """Points ``cfg.output_dir`` at the directory Hydra created for this run,
    so that ``hydra.run.dir=...`` and ``output_dir=...`` both work."""
    from hydra.core.hydra_config import HydraConfig

    cfg.output_dir = HydraConfig.get().runtime.output_dir
