"""The command line of the Hydra tools: what it said (:func:`command_line_overrides`)
and the experiment a registry name implies (:func:`zoo_experiment_argv`)."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

import torch

from ann.errors import UserError
from ann.hub.zoo import get_entry


def command_line_overrides() -> list[str] | None:
    """The running Hydra app's command-line overrides (``["checkpoint=...",
    "dataset.root=..."]``); None outside a Hydra app (a caller that composed
    its config itself, e.g. with :func:`ann.config.compose.compose`)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


# Keys whose value may be a registry name (zoo:NAME), whose entry names the experiment.
ZOO_KEYS = ("checkpoint", "trainer.load_from")


def zoo_experiment_values(args: Sequence[str]) -> list[str]:
    """Command-line overrides with ``experiment=<the entry's>`` added when a
    :data:`ZOO_KEYS` value is ``zoo:NAME`` and no ``experiment=`` is given, so
    that Hydra composes the model the published weights fit (and names the
    run after it). An unknown name is left for the command to report."""
    keys = [arg.partition("=")[0].lstrip("+") for arg in args]
    if "experiment" in keys:
        return list(args)
    for key, arg in zip(keys, args, strict=True):
        value = arg.partition("=")[2].strip("'\"")
        if key in ZOO_KEYS and value.startswith("zoo:"):
            try:
                return [*args, f"experiment={get_entry(value).experiment}"]
            except UserError:
                return list(args)
    return list(args)


# The tools whose outputs go to outputs/<name>/<tool>.
NAMED_BY_CHECKPOINT = ("eval.py", "infer.py", "export.py")


def run_name_values(tool: str, args: Sequence[str]) -> list[str]:
    """Command-line overrides with ``name=<the checkpoint's run name>`` added
    for tools/eval.py, infer.py and export.py given ``checkpoint=FILE`` and
    none of ``experiment=``, ``name=`` or ``output_dir=``, so that their
    outputs go beside the run's (outputs/demo/eval), as with ``experiment=``.
    Hydra makes the output folder before the command runs, hence here. The
    file is memory-mapped (its tensors are not read); a file that does not
    load is left for the command to report in its one line."""
    keys = [arg.partition("=")[0].lstrip("+") for arg in args]
    if tool not in NAMED_BY_CHECKPOINT or {"experiment", "name", "output_dir"} & set(keys):
        return list(args)
    values = [arg.partition("=")[2].strip("'\"") for arg in args]
    path = next((v for k, v in zip(keys, values, strict=True) if k == "checkpoint"), "")
    if not path or path.startswith("zoo:"):
        return list(args)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any failure is the command's to report
        return list(args)
    config = state.get("config") if isinstance(state, dict) else None
    name = config.get("name") if isinstance(config, dict) else None
    name = name or (state.get("experiment") if isinstance(state, dict) else None)
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
        return list(args)
    return [*args, f"name={name}"]


def zoo_experiment_argv() -> None:
    """Applies :func:`zoo_experiment_values` to ``sys.argv`` in place, before
    ``@hydra.main`` parses it."""
    sys.argv[1:] = zoo_experiment_values(sys.argv[1:])
