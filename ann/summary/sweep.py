"""Hydra sweeps: the jobs a sweep's multirun.yaml says it should have run,
and the ones that left no folder.

With Hydra's basic launcher a job that fails with a user error ends the
sweep, so the jobs after it never run; :func:`missing_jobs` reports them as
skipped, next to the folders :func:`ann.summary.runs.find_runs` skipped.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from ann.summary.runs import Run, Skipped, first_line

if TYPE_CHECKING:  # imported at run time by sweep_jobs, when it is needed
    from hydra.core.override_parser.overrides_parser import OverridesParser


@dataclass
class Job:
    """One job of a Hydra multirun, as its multirun.yaml describes it."""

    number: int
    overrides: list[str]  # the overrides that differ between the sweep's jobs
    path: Path  # the folder Hydra gives it: <the folder of multirun.yaml>/<subdir>
    subdir: str
    # False when the job's hydra.sweep.dir may differ from the one multirun.yaml
    # was written to (Hydra resolves it per job): it sets a key sweep.dir
    # uses (name=a,b) or chooses a config group (experiment=a,b sets name).
    # Then only subdir is known.
    exact: bool


def sweep_jobs(multirun_yaml: Path) -> list[Job]:
    """The jobs of the sweep that wrote ``multirun_yaml`` (Hydra writes it into
    its sweep.dir when a ``-m`` run starts) and the folder each gets, as
    Hydra's basic sweeper expands the overrides and names the folders
    (``hydra.sweep.subdir``, in ann ``<override_dirname>/seed=<seed>``).

    Only public Hydra API: the overrides are parsed with Hydra's
    ``OverridesParser`` and their grid is the product of the choice lists, in
    the order of first appearance (the basic sweeper's job order). Raises
    ValueError when the sweep cannot be expanded here (another sweeper, a
    glob() sweep, a folder name that needs more than the sweep's own config).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = OmegaConf.load(multirun_yaml)
    hydra_cfg = cfg.get("hydra")
    if not isinstance(hydra_cfg, DictConfig):
        raise ValueError("no hydra section")
    sweeper = str(OmegaConf.select(cfg, "hydra.sweeper._target_", default=""))
    if not sweeper.endswith("BasicSweeper"):
        raise ValueError(f"sweeper {sweeper or '?'} is not Hydra's basic sweeper")
    parser = OverridesParser.create()
    choices = _choices(cfg, parser)
    naming = hydra_cfg.job.config.override_dirname
    template = str(OmegaConf.to_container(hydra_cfg.sweep, resolve=False).get("subdir"))
    if "${now:" in template:
        # The time it gives now is not the time the sweep started.
        raise ValueError(f"hydra.sweep.subdir {template} depends on the start time")
    varying = {k for k, v in choices.items() if len(v) > 1}
    master_dir = _sweep_dir(cfg)
    jobs = []
    for number, lines in enumerate(itertools.product(*choices.values())):
        job_overrides = parser.parse_overrides(list(lines))
        job_cfg = copy.deepcopy(cfg)
        job_cfg.hydra.job.override_dirname = _override_dirname(
            job_overrides, list(naming.exclude_keys), naming.item_sep, naming.kv_sep
        )
        job_cfg.hydra.job.num = number
        job_cfg.hydra.job.id = number
        exact = True
        for override in job_overrides:
            applied = _apply_value(job_cfg, override)
            exact = exact and (applied or override.get_key_element() not in varying)
        exact = exact and _sweep_dir(job_cfg) == master_dir
        subdir = os.path.normpath(str(OmegaConf.select(job_cfg, "hydra.sweep.subdir")))
        shown = [line for line in lines if line.split("=", 1)[0] in varying]
        jobs.append(Job(number, shown, multirun_yaml.parent / subdir, subdir, exact))
    return jobs


def _choices(cfg: DictConfig, parser: OverridesParser) -> dict[str, list[str]]:
    """Each key the sweep ``cfg`` overrides (its ``hydra.sweeper.params``, then
    its command line) -> its ``key=value`` lines: one per value of a sweep,
    in order, or the one of a plain override. Raises ValueError for a sweep
    that is not a list of values (``interval``, unlike ``range``)."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(OmegaConf.select(cfg, "hydra.overrides.task", default=None) or [])
    choices: dict[str, list[str]] = {}
    for override in parser.parse_overrides(arguments):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise ValueError(f"{override.input_line}: not a list of values")
            choices[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return choices


def _sweep_dir(cfg: DictConfig) -> str | None:
    """``hydra.sweep.dir`` resolved; None if it uses a resolver only Hydra has
    (``${now:...}``, the same for all jobs of a sweep)."""
    try:
        return str(OmegaConf.select(cfg, "hydra.sweep.dir"))
    except Exception:  # an unsupported interpolation
        return None


def _override_dirname(
    overrides: Iterable[Any], exclude_keys: list[str], item_sep: str, kv_sep: str
) -> str:
    """``hydra.job.override_dirname`` by Hydra's documented rule (its
    "Customizing working directory" page): the sorted override lines whose key
    is not in ``exclude_keys``, joined by ``item_sep``, ``=`` replaced by ``kv_sep``."""
    lines = sorted(o.input_line for o in overrides if o.key_or_group not in exclude_keys)
    return re.sub("[=]", kv_sep, item_sep.join(lines))


def _apply_value(cfg: DictConfig, override: Any) -> bool:
    """Sets a plain ``key=value`` override in ``cfg`` so that a folder name
    like ``seed=${trainer.seed}`` sees the job's value; False for what is not
    the value of a key: a config group choice (``model=ann_r18``), an
    addition or a deletion."""
    if override.is_add() or override.is_force_add() or override.is_delete():
        return False
    key = override.key_or_group
    current = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False)
    if current is _ABSENT or OmegaConf.is_config(current):
        return False
    OmegaConf.update(cfg, key, override.value(), merge=False)
    return True


_ABSENT = object()


def missing_jobs(roots: Sequence[Path], runs: list[Run], skipped: list[Skipped]) -> list[Skipped]:
    """Jobs of the sweeps under ``roots`` (their multirun.yaml) that left no
    folder: with Hydra's basic launcher a job that fails with a user error
    (printed as one ``error:`` line) ends the sweep, so the jobs after it
    never run. Also names the job of each skipped folder that is a sweep's.

    A multirun.yaml describes the last sweep started in its folder only.
    """
    found = {r.path.resolve() for r in runs}
    by_path = {s.path.resolve(): s for s in skipped}
    claimed: set[Path] = set()  # each folder is one job's
    missing: list[Skipped] = []
    for root in roots:
        for multirun_yaml in sorted(root.rglob("multirun.yaml")):
            try:
                jobs = sweep_jobs(multirun_yaml)
            except Exception as exc:  # any failure: say so, keep the summary
                missing.append(
                    Skipped(
                        multirun_yaml,
                        f"cannot list this sweep's jobs to find missing ones ({first_line(exc)})",
                    )
                )
                continue
            for job in jobs:
                if (gap := _claim_folder(job, multirun_yaml, found, by_path, claimed)) is not None:
                    missing.append(gap)
    return missing


def _claim_folder(
    job: Job,
    multirun_yaml: Path,
    found: set[Path],
    by_path: dict[Path, Skipped],
    claimed: set[Path],
) -> Skipped | None:
    """Adds the folder of ``job`` (of the sweep ``multirun_yaml``) to
    ``claimed``: one of the runs ``found`` or of the folders skipped
    (``by_path``, whose reason then names the job). Returns the Skipped
    entry of a job that has no folder, else None."""
    what = f"job #{job.number} ({' '.join(job.overrides) or 'no sweep overrides'})"
    why = "the sweep stopped before it, e.g. at a failed job, or it is still to come"
    if job.exact:
        folder = job.path.resolve()
    else:
        # Hydra resolves sweep.dir per job: with ${name} in it,
        # experiment=a,b puts the jobs under multirun/a and
        # multirun/b. Any folder ending in the job's subdir will do.
        tail = f"{os.sep}{job.subdir}"
        matches = sorted(
            p for p in (*found, *by_path) if str(p).endswith(tail) and p not in claimed
        )
        if not matches:
            return Skipped(
                multirun_yaml,
                f"missing: {what} has no folder ending in {tail} under the "
                f"folders summarised ({why})",
            )
        folder = matches[0]
    claimed.add(folder)
    if folder in by_path:
        by_path[folder].reason = f"{what}: {by_path[folder].reason}"
    elif job.exact and folder not in found and not folder.exists():
        return Skipped(job.path, f"missing: {what} has no folder ({why})")
    return None
