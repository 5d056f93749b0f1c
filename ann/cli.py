"""What the Hydra entry points in tools/ share: user errors as one line, and
path values that Hydra's override grammar would refuse."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Sequence
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


# Keys whose values are file or folder paths. A sweep's run folders are named
# like "optimizer.lr=0.01/seed=0", and Hydra's grammar refuses an unquoted "="
# (or bracket) in a value: "mismatched input '=' expecting <EOF>".
PATH_KEYS = (
    "checkpoint",
    "trainer.load_from",
    "model.backbone.pretrained",
    "dataset.root",
    "output_dir",
    "input",
    "browse.out",
    "paths.data_dir",
    "paths.output_root",
    "hydra.run.dir",
    "hydra.sweep.dir",
)
_NEEDS_QUOTES = set("=()[]")


def _quoted(value: str) -> str:
    """``value`` as a Hydra quoted string if the grammar would refuse it bare."""
    if value[:1] in ("'", '"') or not (_NEEDS_QUOTES & set(value)):
        return value
    # Inside quotes Hydra reads a backslash literally unless it precedes a
    # quote (or the closing one): only those are doubled.
    body = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value).replace("'", "\\'")
    return f"'{body}'"


def quote_path_values(args: Sequence[str]) -> list[str]:
    """Command-line overrides with each path value that holds ``=`` (or
    brackets) wrapped in Hydra's single quotes: ``checkpoint=a=1/best.pth``
    -> ``checkpoint='a=1/best.pth'``. Only the keys of :data:`PATH_KEYS`
    (also with ``+``/``++``); values already quoted and every other argument
    pass unchanged (an interpolation inside quotes still resolves). A ``,``
    still separates sweep values."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") in PATH_KEYS and value:
            value = ",".join(_quoted(v) for v in value.split(","))
        out.append(f"{key}{sep}{value}")
    return out


def quote_path_argv() -> None:
    """Applies :func:`quote_path_values` to ``sys.argv`` in place; the tools
    call it before ``@hydra.main`` parses the command line."""
    sys.argv[1:] = quote_path_values(sys.argv[1:])
