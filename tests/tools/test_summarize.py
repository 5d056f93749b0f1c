"""Seed sweeps and their summary: ``tools/train.py -m`` puts each seed of a
configuration under one folder, and ``tools/summarize.py`` reports one row per
configuration whose statistics equal those computed here from the runs'
metrics.json; unfinished, junk, missing and evaluation-only runs are read or
reported, never a reason to fail."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import statistics
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ann.commands.summarize import main
from ann.summary import summarize
from helpers import (
    ROOT,
    TEST_CONFIGS,
    checkpoint_overrides,
    compose_cfg,
    run_bounded,
    run_tool,
    tiny_train_overrides,
)

SEEDS = ("0", "1", "2")
LRS = ("0.01", "0.02")
# The test-only tiny model: each job of the sweep takes about a second.
TINY = (TEST_CONFIGS, "model=tiny_gn")


def sweep_overrides(shapes_root: Path, sweep_dir: Path, *extra: str) -> list[str]:
    """``-m`` and the tiny training overrides (4 iterations, validations at 2
    and 4), without output_dir: a sweep's jobs write where Hydra puts them."""
    tiny = [
        o for o in tiny_train_overrides(shapes_root, sweep_dir) if not o.startswith("output_dir=")
    ]
    return ["-m", *tiny, *TINY, f"hydra.sweep.dir={sweep_dir}", *extra]


@pytest.fixture(scope="module")
def sweep(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 seeds × 2 learning rates of the demo experiment, a real Hydra multirun."""
    out = tmp_path_factory.mktemp("sweep")
    result = run_tool(
        "train.py",
        sweep_overrides(
            shapes_root, out, f"trainer.seed={','.join(SEEDS)}", f"optimizer.lr={','.join(LRS)}"
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("config.yaml"))


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def config_dir(root: Path, lr: str) -> Path:
    """The folder holding the seeds of the sweep's runs with learning rate ``lr``."""
    (folder,) = {p.parent for p in root.rglob("seed=0") if f"/optimizer.lr={lr}/" in f"{p}/"}
    return folder


def test_sweep_folders_group_seeds_under_their_configuration(sweep: Path) -> None:
    runs = run_dirs(sweep)
    assert len(runs) == len(SEEDS) * len(LRS)
    by_config: dict[Path, set[str]] = {}
    for run in runs:
        by_config.setdefault(run.parent, set()).add(run.name)
        cfg = OmegaConf.load(run / "config.yaml")
        # tools/train.py wrote into the folder Hydra made for the job
        assert Path(cfg.output_dir) == run and (run / "metrics.json").is_file()
        assert run.name == f"seed={cfg.trainer.seed}"
        assert (run / "checkpoints" / "last.pth").is_file() and (run / "train.log").is_file()
    assert sorted(by_config) == [config_dir(sweep, lr) for lr in LRS]
    assert all(seeds == {f"seed={s}" for s in SEEDS} for seeds in by_config.values())
    for folder in by_config:
        # one level per naming override, sorted by key; the seed has its own
        # level, the experiment is in sweep.dir, data and outputs name nothing
        levels = folder.relative_to(sweep).parts
        keys = [level.split("=", 1)[0] for level in levels]
        assert all("=" in level for level in levels) and keys == sorted(keys)
        assert "optimizer.lr" in keys and "model" in keys and "trainer.max_iters" in keys
        assert not {"trainer.seed", "experiment", "dataset.root", "output_dir"} & set(keys)


def test_sweep_folder_without_naming_overrides_is_the_seed() -> None:
    """With no override that names a folder, override_dirname is empty: the
    job's folder is <sweep.dir>/seed=N, not the absolute /seed=N."""
    overrides = ["experiment=demo", "trainer.seed=3", "dataset.root=/x/y", "output_dir=/z"]
    cfg = compose_cfg(overrides, hydra=True)
    assert cfg.hydra.job.override_dirname == ""
    subdir = OmegaConf.select(cfg, "hydra.sweep.subdir")
    # Hydra joins sweep.dir and subdir, then takes the absolute path.
    assert os.path.abspath(os.path.join("sweep", subdir)) == os.path.abspath("sweep/seed=3")
    assert cfg.hydra.sweep.dir == "outputs/multirun/demo"


def test_summary_has_one_row_per_configuration_with_the_runs_statistics(
    sweep: Path, tmp_path: Path
) -> None:
    result = run_bounded(
        [sys.executable, str(ROOT / "tools" / "summarize.py"), str(sweep), "--out", f"{tmp_path}/"],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert len(rows) == 2
    assert [r["optimizer.lr"] for r in rows] == list(LRS)  # the one key that differs
    per_class = list(csv.DictReader((tmp_path / "summary_per_class.csv").open()))
    for row in rows:
        runs = run_dirs(config_dir(sweep, row["optimizer.lr"]))
        finals = [metrics(r)["mIoU"] for r in runs]
        assert row["n"] == "3" and row["finished"] == "3" and row["seeds"] == "0,1,2"
        assert float(row["miou_mean"]) == pytest.approx(statistics.fmean(finals), abs=1e-12)
        assert float(row["miou_std"]) == pytest.approx(statistics.stdev(finals), abs=1e-12)
        assert float(row["miou_min"]) == min(finals) and float(row["miou_max"]) == max(finals)
        # best: over both validations; train.log shows them as percentages, 2 decimals
        bests = [max(max(validations(r)), metrics(r)["mIoU"]) for r in runs]
        assert float(row["best_miou_mean"]) == pytest.approx(statistics.fmean(bests), abs=1e-4)
        assert float(row["best_miou_mean"]) >= float(row["miou_mean"])
        assert row["iterations_min"] == row["iterations_max"] == "4"
        assert float(row["wall_time_s_mean"]) > 0
        for name in metrics(runs[0])["per_class"]:
            ious = [metrics(r)["per_class"][name]["IoU"] for r in runs]
            (pc,) = [p for p in per_class if p["config"] == row["config"] and p["class"] == name]
            assert float(pc["iou_mean"]) == pytest.approx(statistics.fmean(ious), abs=1e-12)
    # the printed markdown: percentages with 2 decimals, and it says so
    table = result.stdout
    assert "in percent (2 decimals)" in table and "| optimizer.lr |" in table
    mean, std = float(rows[0]["miou_mean"]), float(rows[0]["miou_std"])
    assert f"| {100 * mean:.2f} ± {100 * std:.2f} |" in table
    assert (tmp_path / "summary.md").read_text() in table
    assert "## Skipped (0)" in table


def validations(run: Path) -> list[float]:
    """Each validation's mIoU as train.log prints it (a percentage), as a fraction."""
    text = (run / "train.log").read_text()
    return [float(m) / 100 for m in re.findall(r"^mIoU +([\d.]+) ", text, re.MULTILINE)]


def test_unfinished_junk_and_eval_only_runs(sweep: Path, shapes_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    shutil.copytree(sweep, root, ignore=shutil.ignore_patterns("summary*"))
    lr1, lr2 = (config_dir(root, lr) for lr in LRS)
    # metrics.json gone: the run is skipped, whatever its event files say
    (lr2 / "seed=1" / "metrics.json").unlink()
    # killed after its first validation: counted, with the iterations it reached
    unfinished = lr1 / "seed=3"
    shutil.copytree(lr1 / "seed=2", unfinished, ignore=shutil.ignore_patterns("tb"))
    cfg = OmegaConf.load(unfinished / "config.yaml")
    cfg.trainer.seed, cfg.output_dir = 3, str(unfinished)
    OmegaConf.save(cfg, unfinished / "config.yaml")
    first = {**metrics(unfinished), "iteration": 2, "mIoU": validations(unfinished)[0]}
    (unfinished / "metrics.json").write_text(json.dumps(first))
    log = (unfinished / "train.log").read_text()
    (unfinished / "train.log").write_text(log[: log.index(" iter 4/4 ")].rsplit("\n", 1)[0])
    jsonl = unfinished / "metrics.jsonl"  # its first validation's line only
    jsonl.write_text(jsonl.read_text().splitlines(keepends=True)[0])
    # killed before its first validation
    early = root / "killed_early"
    early.mkdir()
    shutil.copy(lr1 / "seed=0" / "config.yaml", early)
    (early / "train.log").write_text(log[: log.index(" iter 2/4 ")].rsplit("\n", 1)[0] + "\n")
    # junk: not a run at all, and a run folder with an unreadable config.yaml
    (root / "junk" / "notes").mkdir(parents=True)
    (root / "junk" / "notes" / "todo.txt").write_text("plot the curves\n")
    (root / "junk" / "broken").mkdir()
    (root / "junk" / "broken" / "config.yaml").write_text("model: [unclosed\n")
    # an evaluation of one checkpoint (tools/eval.py: config.yaml, metrics.json, eval.log)
    ckpt = lr1 / "seed=0" / "checkpoints" / "last.pth"
    # quoted: the folder names hold "=", which Hydra's override grammar reads
    overrides = checkpoint_overrides(shapes_root, f"'{ckpt}'", root / "eval_only", *TINY)
    result = run_tool("eval.py", overrides)
    assert result.returncode == 0, result.stderr[-3000:]

    summary = summarize([root])

    by_kind_lr = {(c.kind, c.identity.get("optimizer.lr")): c for c in summary.configurations}
    assert len(summary.configurations) == 3
    train1, train2 = by_kind_lr[("train", LRS[0])], by_kind_lr[("train", LRS[1])]
    assert sorted(r.seed for r in train1.runs) == ["0", "1", "2", "3"]
    assert sorted(r.seed for r in train2.runs) == ["0", "2"]
    (late,) = summary.unfinished
    assert late.path == unfinished and late.iteration == 2 and late.iterations == 3
    assert train1.final.mean == pytest.approx(
        statistics.fmean([metrics(r.path)["mIoU"] for r in train1.runs]), abs=1e-12
    )
    (evaluation,) = [c for c in summary.configurations if c.kind == "eval"]
    (run,) = evaluation.runs
    assert run.path == root / "eval_only" and run.miou == metrics(run.path)["mIoU"]
    assert run.best_miou is None and run.iterations == 4  # the checkpoint's iteration
    assert evaluation.identity["checkpoint"] == str(ckpt)
    assert "checkpoint" in summary.keys

    reasons = {s.path: s.reason for s in summary.skipped}
    assert set(reasons) == {
        lr2 / "seed=1",
        early,
        root / "junk" / "notes",
        root / "junk" / "broken",
    }
    assert "no metrics.json" in reasons[lr2 / "seed=1"]
    assert "job #3 (trainer.seed=1 optimizer.lr=0.02)" in reasons[lr2 / "seed=1"]
    assert "before its first validation (reached iteration 1 of 4)" in reasons[early]
    assert reasons[root / "junk" / "notes"].startswith("not a run")
    assert "not readable YAML" in reasons[root / "junk" / "broken"]


def test_a_failed_job_does_not_stop_the_other_seeds(
    sweep: Path, shapes_root: Path, tmp_path: Path
) -> None:
    """A job that stops on a user error prints its one ``error:`` line and
    fails; Hydra's launcher runs the sweep's other jobs and reports the
    failure at the end; the summary names the failed jobs."""
    failing = tmp_path / "failing"
    result = run_tool(
        "train.py",
        sweep_overrides(
            shapes_root,
            failing,
            "trainer.amp_dtype=nonsense,bf16",
            "trainer.seed=0,1",
            "optimizer.lr=0.03",  # else its runs would join the sweep's lr=0.02 runs
        ),
    )
    assert result.returncode != 0
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2 and all("trainer.amp_dtype='nonsense'" in ln for ln in errors)

    summary = summarize([failing, sweep])

    assert [len(c.runs) for c in summary.configurations] == [2, 3, 3]
    assert sorted(r.seed for r in summary.configurations[0].runs) == ["0", "1"]
    reasons = sorted(s.reason for s in summary.skipped)
    assert len(reasons) == 2
    assert reasons[0].startswith("job #0 (trainer.amp_dtype=nonsense trainer.seed=0): empty folder")
    assert reasons[1].startswith("job #1 (trainer.amp_dtype=nonsense trainer.seed=1): empty folder")


def test_a_missing_directory_is_one_error_line(tmp_path: Path) -> None:
    result = run_bounded(
        [sys.executable, str(ROOT / "tools" / "summarize.py"), str(tmp_path / "nope")], timeout=60
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {tmp_path / 'nope'} does not exist (expected a folder of runs, e.g. outputs/multirun)"
    )
    assert result.stdout == ""


def test_a_bad_option_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path), "--bogus"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unrecognized arguments: --bogus") and err.count("\n") == 1
