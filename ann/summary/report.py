"""Writing a summary (:func:`write_summary`), one row per configuration; the
config keys whose values differ between the configurations are columns:

- ``summary.md`` (also printed): mIoU and IoU in percent with 2 decimals:
  final mIoU mean ± std, min, max; best mIoU mean ± std; iterations reached
  (min–max); mean wall time; then a per-class table (classes as rows,
  configurations as columns, mean IoU), the unfinished and the skipped runs;
- ``summary.csv``: the same numbers as fractions in [0, 1] (min and max of the
  best mIoU too), ``finished`` as a count, the runs' paths joined by ``;``;
- ``summary_per_class.csv``: long format, one row per (configuration, class):
  n (runs where the class has an IoU), mean, std, min, max as fractions.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from ann.summary.configurations import Configuration, Stats, Summary, SummaryError
from ann.summary.runs import OUTPUT_NAMES


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def _mean_std(stats: Stats | None) -> str:
    if stats is None:
        return ""
    return _pct(stats.mean) + (f" ± {_pct(stats.std)}" if stats.std is not None else "")


def _span(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _seeds(c: Configuration) -> str:
    return ",".join(r.seed for r in sorted(c.runs, key=lambda r: _natural(r.seed)) if r.seed)


def to_markdown(summary: Summary) -> str:
    """The summary as markdown: the configurations, per-class IoU, unfinished
    and skipped runs."""
    n_runs = sum(len(c.runs) for c in summary.configurations)
    lines = [
        f"# Summary: {n_runs} runs in {len(summary.configurations)} configurations",
        "",
        "mIoU and IoU in percent (2 decimals): mean ± sample standard deviation (n-1; none "
        "for one run) over the runs of a configuration, which differ only in trainer.seed. "
        "final: the last validation (metrics.json; an evaluation: its mIoU); best: the best "
        "validation. summary.csv and summary_per_class.csv hold the same as fractions in "
        "[0, 1].",
        "",
    ]
    lines += _configurations_table(summary)
    lines.append("")
    lines.append(
        "iterations: reached (min–max over the runs); an evaluation: its checkpoint's. "
        "wall time: mean per training run, from its TensorBoard events (time between a kill "
        "and a resume not counted) or else its train.log."
    )
    lines += _per_class_section(summary)
    if summary.unfinished:
        lines += ["", "## Unfinished runs (counted, with the iterations they reached)", ""]
        lines += [
            f"- `{r.path}`: last validation at iteration {r.iteration} of {r.max_iters} "
            "(stopped, failed or still running)"
            for r in summary.unfinished
        ]
    lines += ["", f"## Skipped ({len(summary.skipped)})", ""]
    lines += [f"- `{s.path}`: {s.reason}" for s in summary.skipped] or ["None."]
    return "\n".join(lines) + "\n"


def _configurations_table(summary: Summary) -> list[str]:
    """The markdown table of the configurations, one row each (or a line
    saying there are none)."""
    header = ["#", "kind", *summary.keys, "n", "seeds", "finished", "final mIoU %", "min", "max"]
    header += ["best mIoU %", "iterations", "wall time"]
    rows = []
    for c in summary.configurations:
        final, walls = c.final, c.wall_time
        rows.append(
            [str(c.number), c.kind, *(c.identity.get(k, "—") for k in summary.keys)]
            + [
                str(len(c.runs)),
                _seeds(c) or "—",
                f"{sum(r.finished for r in c.runs)}/{len(c.runs)}",
            ]
            + [_mean_std(final), _pct(final.min), _pct(final.max), _mean_std(c.best)]
            + [_span([r.iterations for r in c.runs]), _duration(walls.mean if walls else None)]
        )
    return _md_table(header, rows) if rows else ["No runs with a validation were found."]


def _per_class_section(summary: Summary) -> list[str]:
    """The per-class IoU section (classes as rows, configurations as
    columns), from a blank line on; none when no run has per-class IoU."""
    per_class = {c.number: c.per_class() for c in summary.configurations}
    names = list(dict.fromkeys(n for pc in per_class.values() for n in pc))
    if not names:
        return []
    lines = ["", "## Per-class IoU % (mean over the runs of configuration #)", ""]
    class_rows = []
    for name in names:
        means = [stats.get(name) for stats in per_class.values()]
        class_rows.append([name, *(_pct(m.mean) if m else "" for m in means)])
    return lines + _md_table(["class", *(f"#{c}" for c in per_class)], class_rows)


def _num(x: float | int | None) -> str:
    return "" if x is None else repr(x)


def to_csv(summary: Summary) -> str:
    """One row per configuration, mIoU as fractions, the runs' paths joined by ';'."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["config", "kind", *summary.keys, "n", "seeds", "finished"]
        + ["miou_mean", "miou_std", "miou_min", "miou_max"]
        + ["best_miou_mean", "best_miou_std", "best_miou_min", "best_miou_max"]
        + ["iterations_min", "iterations_max", "wall_time_s_mean", "runs"]
    )
    for c in summary.configurations:
        final, best, walls = c.final, c.best, c.wall_time
        iters = [r.iterations for r in c.runs]
        writer.writerow(
            [c.number, c.kind, *(c.identity.get(k, "") for k in summary.keys)]
            + [len(c.runs), _seeds(c), sum(r.finished for r in c.runs)]
            + [_num(final.mean), _num(final.std), _num(final.min), _num(final.max)]
            + [_num(best.mean if best else None), _num(best.std if best else None)]
            + [_num(best.min if best else None), _num(best.max if best else None)]
            + [min(iters), max(iters), _num(walls.mean if walls else None)]
            + [";".join(str(r.path) for r in c.runs)]
        )
    return out.getvalue()


def to_per_class_csv(summary: Summary) -> str:
    """Long format: one row per (configuration, class), IoU as fractions."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["config", "class", "n", "iou_mean", "iou_std", "iou_min", "iou_max"])
    for c in summary.configurations:
        for name, s in c.per_class().items():
            if s is None:
                writer.writerow([c.number, name, 0, "", "", "", ""])
            else:
                writer.writerow(
                    [c.number, name, s.n, _num(s.mean), _num(s.std), _num(s.min), _num(s.max)]
                )
    return out.getvalue()


def output_paths(prefix: str | Path) -> list[Path]:
    """summary.md, summary.csv and summary_per_class.csv under ``prefix``: in it
    when it is a directory (or ends with a slash), else with it as a name prefix."""
    text = str(prefix)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        return [Path(text) / name for name in OUTPUT_NAMES]
    return [Path(text + name) for name in OUTPUT_NAMES]


def write_summary(summary: Summary, prefix: str | Path) -> list[Path]:
    """Writes the markdown and the two CSV files; returns their paths."""
    paths = output_paths(prefix)
    try:
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        for path, text in zip(
            paths, (to_markdown(summary), to_csv(summary), to_per_class_csv(summary)), strict=True
        ):
            path.write_text(text)
    except OSError as exc:
        raise SummaryError(
            f"cannot write the summary to {paths[0].parent}: {exc.strerror}"
        ) from None
    return paths


def _natural(text: str) -> tuple:
    """Sorts "2" before "10"."""
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)
