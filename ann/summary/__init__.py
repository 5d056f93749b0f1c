"""Summaries of seed sweeps: ``python tools/summarize.py DIR [DIR ...] [--out PREFIX]``.

Walks the directories for runs, groups them into *configurations* (runs whose
resolved config.yaml is identical except for ``trainer.seed`` and the keys
that only say where things live) and reports, per configuration, the mIoU of
the runs' last validation ("final": their metrics.json) as mean ± sample
standard deviation, min and max, the best validation mIoU, the iterations
reached, the wall time and the per-class IoU means.

- :mod:`ann.summary.runs`: finding and reading run folders, and why one is skipped;
- :mod:`ann.summary.history`: a training run's validations and wall time from
  its metrics.jsonl and TensorBoard events (older runs: their train.log);
- :mod:`ann.summary.sweep`: the jobs of a Hydra sweep (multirun.yaml) that left no folder;
- :mod:`ann.summary.configurations`: grouping runs into configurations, statistics;
- :mod:`ann.summary.report`: summary.md, summary.csv and summary_per_class.csv;

The command line is :mod:`ann.commands.summarize`.
"""

from ann.summary.configurations import (
    Configuration,
    Stats,
    Summary,
    SummaryError,
    group_runs,
    summarize,
)
from ann.summary.report import to_csv, to_markdown, to_per_class_csv, write_summary
from ann.summary.runs import Run, Skipped, find_runs, read_run
from ann.summary.sweep import missing_jobs, sweep_jobs

__all__ = [
    "Configuration",
    "Run",
    "Skipped",
    "Stats",
    "Summary",
    "SummaryError",
    "find_runs",
    "group_runs",
    "missing_jobs",
    "read_run",
    "summarize",
    "sweep_jobs",
    "to_csv",
    "to_markdown",
    "to_per_class_csv",
    "write_summary",
]
