"""Configurations: runs grouped by their config, with their statistics.

Two runs are repeats when their flattened config.yaml agree on every key
except ``trainer.seed``, ``output_dir``, ``name``, ``paths.*`` and
``dataset.root`` / ``dataset.<split>.root``
(:func:`ann.summary.runs.is_location_key`). Training runs and evaluations
(config.yaml with a ``checkpoint`` key) are never in one configuration; an
evaluation's ``checkpoint`` is part of its configuration, so evaluations of
different checkpoints are separate rows. An evaluation composes no training
groups: its config holds only the training keys its experiment sets.

std is the sample standard deviation (n - 1), empty for a single run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ann.errors import UserError
from ann.summary.runs import Run, Skipped, find_runs
from ann.summary.sweep import missing_jobs


class SummaryError(UserError):
    """A directory to summarise is missing, or an output file cannot be written."""


@dataclass
class Stats:
    """Mean, sample standard deviation (None for one value), min and max."""

    n: int
    mean: float
    std: float | None
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats | None:
        """The statistics of ``values``; None when there are none."""
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else None
        return cls(len(values), statistics.fmean(values), std, min(values), max(values))


@dataclass
class Configuration:
    """Runs with the same configuration (the seeds of one setting)."""

    number: int
    kind: str
    identity: dict[str, str]
    runs: list[Run] = field(default_factory=list)

    @property
    def final(self) -> Stats:
        """mIoU of the runs' last validations."""
        stats = Stats.of([r.miou for r in self.runs])
        assert stats is not None  # a configuration has at least one run
        return stats

    @property
    def best(self) -> Stats | None:
        """mIoU of the runs' best validations (None for evaluations)."""
        return Stats.of([r.best_miou for r in self.runs if r.best_miou is not None])

    @property
    def wall_time(self) -> Stats | None:
        """Wall time in seconds of the runs that have one (training runs)."""
        return Stats.of([r.wall_time_s for r in self.runs if r.wall_time_s is not None])

    def per_class(self) -> dict[str, Stats | None]:
        """IoU statistics per class over the runs where the class has an IoU
        (a class absent from ground truth and prediction has none)."""
        names: dict[str, None] = {}
        for run in self.runs:
            names.update(dict.fromkeys(run.per_class))
        return {
            name: Stats.of(
                [r.per_class[name] for r in self.runs if r.per_class.get(name) is not None]
            )
            for name in names
        }


@dataclass
class Summary:
    """The configurations, the config keys that tell them apart, what was skipped."""

    configurations: list[Configuration]
    keys: list[str]
    skipped: list[Skipped]

    @property
    def unfinished(self) -> list[Run]:
        """Counted training runs whose last validation is before max_iters."""
        return [r for c in self.configurations for r in c.runs if not r.finished]


def group_runs(runs: Sequence[Run]) -> tuple[list[Configuration], list[str]]:
    """Configurations in order of their first run, and the config keys (in
    config order) whose values differ between configurations of one kind,
    plus an evaluation's ``checkpoint``, what it is most of all."""
    groups: dict[tuple, Configuration] = {}
    for run in runs:
        key = (run.kind, tuple(sorted(run.identity.items())))
        if key not in groups:
            groups[key] = Configuration(len(groups) + 1, run.kind, run.identity)
        groups[key].runs.append(run)
    configurations = list(groups.values())
    all_keys: dict[str, None] = {}
    for c in configurations:
        all_keys.update(dict.fromkeys(c.identity))
    # Compared within a kind: the training keys an evaluation lacks (it
    # composes no optimizer, scheduler or trainer group) do not tell the
    # training runs apart.
    kinds = {c.kind for c in configurations}
    keys = [
        k
        for k in all_keys
        if (k == "checkpoint" and "eval" in kinds)
        or any(
            len({c.identity.get(k) for c in configurations if c.kind == kind}) > 1 for kind in kinds
        )
    ]
    return configurations, keys


def summarize(roots: Sequence[str | Path]) -> Summary:
    """Reads every run under ``roots`` and groups them; raises SummaryError
    for a root that is not a directory."""
    paths = [Path(r) for r in roots]
    for path in paths:
        if not path.is_dir():
            what = "does not exist" if not path.exists() else "is not a directory"
            raise SummaryError(f"{path} {what} (expected a folder of runs, e.g. outputs/multirun)")
    runs, skipped = find_runs(paths)
    skipped += missing_jobs(paths, runs, skipped)
    configurations, keys = group_runs(runs)
    return Summary(configurations, keys, skipped)
