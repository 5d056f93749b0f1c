"""What the Hydra entry points in tools/ share: ``--help`` that explains the
tool, the command line checked before Hydra composes it (typos answered in
one line with the closest names), user errors as one line, and path values
that Hydra's override grammar would refuse."""

from __future__ import annotations

import functools
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.errors import HydraException, InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from ann.commands.overrides import run_name_values, zoo_experiment_values
from ann.config.compose import compose, config_dir
from ann.config.suggest import (
    close_matches,
    config_groups,
    explain,
    group_options,
    key_paths,
    missing_keys,
)
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
        except UserError as exc:
            _stop(str(exc))
        except OmegaConfBaseException as exc:
            _stop(omegaconf_line(exc))
        except InstantiationException as exc:
            # hydra.utils.instantiate wraps what a constructor raises (e.g. a
            # dataset's DataError for a missing root): report the user error itself.
            if isinstance(exc.__cause__, UserError):
                _stop(str(exc.__cause__))
            raise

    return wrapper


def omegaconf_line(exc: OmegaConfBaseException) -> str:
    """An OmegaConf error (several lines: message, full_key, object_type) as one line."""
    key = getattr(exc, "full_key", None)
    if isinstance(exc, MissingMandatoryValue) and key:
        return f"{key} is required: add {key}=VALUE to the command line (--help)"
    first = (getattr(exc, "msg", None) or str(exc)).strip().splitlines()[0]
    return f"{key}: {first}" if key and key not in first else first


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


# What each required key takes, for the one-line error when it is left out.
REQUIRED = {
    "checkpoint": "checkpoint=PATH (a .pth of tools/train.py or tools/convert.py)",
    "input": "input=IMAGE|DIR|GLOB",
}
# The keys evaluation-only configs read from the trainer group; any other
# trainer/optimizer/scheduler override there would be silently ignored.
_EVAL_TRAINER_KEYS = ("trainer.dist_timeout_min",)


def _check_overrides(args: Sequence[str]) -> list[str] | None:
    """The overrides of ``args`` with each sweep (``a,b``, ``range()``) cut to
    its first value, ready for one composition; None when ``args`` hold Hydra
    flags other than ``-m`` (``--cfg job``, ``-cn``), which the check leaves
    to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    flags = [a for a in args if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags):
        return None
    overrides = [a for a in args if not a.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for override in parsed:
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()))
            prefix = override.input_line.split("=", 1)[0]
            out.append(f"{prefix}={first}")
        else:
            out.append(override.input_line)
    return out


def check_command_line(tool: str, config_name: str, args: Sequence[str]) -> None:
    """Composes ``configs/<config_name>.yaml`` with ``args`` once before Hydra
    does, so that a mistyped experiment, group option or key, or a missing
    required key, is one ``error:`` line with the closest names (exit 2)
    instead of Hydra's page. ``tool``: the script's file name, for the hint."""
    try:
        overrides = _check_overrides(args)
    except HydraException as exc:
        _stop(str(explain(exc, list(args), config_dir(), lambda ovs: compose(config_name, ovs))))
    if overrides is None:
        return
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    # A bare command would train the default ResNet-50 recipe on the toy data:
    # ask for a recipe, unless the command line builds one from its parts.
    composed = {"model", "dataset"} <= {k.split("/")[0] for k in keys}
    if config_name == "train" and "experiment" not in keys and not composed:
        names = group_options(config_dir(), "experiment")
        names = ", ".join(n for n in names if "/" not in n and n != "demo")
        _stop(
            f"name an experiment: python tools/{tool} experiment=NAME (experiment=demo trains "
            f"the small model on CPU in about a minute; the others: {names}), or compose "
            "one with model=... dataset=..."
        )
    try:
        cfg = compose(config_name, overrides, hint=f"python tools/{tool} --help lists them")
    except UserError as exc:
        _stop(str(exc))
    if config_name != "train":
        for key in keys:
            if key.split(".")[0] in ("trainer", "optimizer", "scheduler") and (
                key not in _EVAL_TRAINER_KEYS
            ):
                near = close_matches(key, key_paths(cfg))
                mean = f"; did you mean {' or '.join(near)}?" if near else ""
                _stop(f"{key}: a training key, which tools/{tool} does not read{mean}")
    for key in missing_keys(cfg, list(REQUIRED)):
        _stop(f"{key} is required: add {REQUIRED[key]} (python tools/{tool} --help)")


def help_text(tool: str, config_name: str, doc: str) -> str:
    """``--help``: the tool's own text (purpose, examples, required keys),
    then its config groups and their options from the configs tree."""
    training = ("optimizer", "scheduler", "trainer")
    lines = [doc.strip(), "", "Config groups (group=option), from configs/:"]
    for group in config_groups(config_dir()):
        if config_name != "train" and group.split("/")[0] in training:
            continue
        options = ", ".join(group_options(config_dir(), group))
        lines += textwrap.wrap(
            options, 100, initial_indent=f"  {group}: ", subsequent_indent=" " * 6
        )
    lines += [
        "",
        "Any key can be overridden as key=value (e.g. trainer.max_iters=1000); see the",
        f"whole config with: python tools/{tool} experiment=demo --cfg job",
        "Hydra's own options: --hydra-help.",
    ]
    return "\n".join(lines)


def prepare_argv(tool_file: str, config_name: str, doc: str) -> None:
    """What each Hydra tool runs before ``@hydra.main``: ``-h/--help`` prints
    :func:`help_text` and exits 0; path values are quoted
    (:func:`quote_path_argv`); a registry name implies its experiment
    (:func:`~ann.commands.overrides.zoo_experiment_values`); a checkpoint
    file alone names the run (:func:`~ann.commands.overrides.run_name_values`);
    the command line is checked (:func:`check_command_line`)."""
    tool = Path(tool_file).name
    args = sys.argv[1:]
    if "-h" in args or "--help" in args:
        print(help_text(tool, config_name, doc))
        sys.exit(0)
    quote_path_argv()
    # checkpoint=zoo:NAME / trainer.load_from=zoo:NAME: experiment= defaults to the entry's.
    sys.argv[1:] = zoo_experiment_values(sys.argv[1:])
    # checkpoint=FILE alone: outputs beside the run's, under its name.
    sys.argv[1:] = run_name_values(tool, sys.argv[1:])
    check_command_line(tool, config_name, sys.argv[1:])
