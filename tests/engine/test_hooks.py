"""The trainer's hooks: one added from the config runs at every point of the
loop, a wrong one is refused by name, and a run whose output goes to a file
leaves periodic log lines and no progress-bar carriage returns there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ann.commands.train import train
from ann.engine.hooks import Hook
from ann.engine.state import Step
from ann.errors import ConfigError
from ann.summary.history import read_history
from helpers import compose_cfg, run_tool, tiny_train_overrides


class RecordingHook(Hook):
    """Appends a JSON line per call to ``path``: what a user's logger sees."""

    def __init__(self, path: str, tag: str = "rec") -> None:
        self.path, self.tag = Path(path), tag

    def _write(self, **event: Any) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"tag": self.tag, **event}) + "\n")

    def before_train(self, trainer: Any) -> None:
        self._write(at="before_train", iteration=trainer.state.iteration)

    def after_step(self, trainer: Any, step: Step) -> None:
        validated = step.metrics is not None
        self._write(at="after_step", iteration=step.iteration, loss=step.loss, validated=validated)

    def after_validation(self, trainer: Any, metrics: dict) -> None:
        self._write(at="after_validation", iteration=metrics["iteration"], mIoU=metrics["mIoU"])

    def after_train(self, trainer: Any) -> None:
        self._write(at="after_train", iteration=trainer.state.iteration)


def test_a_hook_added_from_the_config_runs(shapes_root: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    hook = f"{{_target_:test_hooks.RecordingHook,path:'{events}',tag:mine}}"
    out = tmp_path / "run"
    metrics = train(compose_cfg(tiny_train_overrides(shapes_root, out, f"trainer.hooks=[{hook}]")))
    calls = [json.loads(line) for line in events.read_text().splitlines()]
    assert {c["tag"] for c in calls} == {"mine"}
    assert [(c["at"], c["iteration"]) for c in calls] == [
        ("before_train", 0),
        ("after_step", 1),
        ("after_validation", 2),
        ("after_step", 2),
        ("after_step", 3),
        ("after_validation", 4),
        ("after_step", 4),
        ("after_train", 4),
    ]
    # It runs after the built-in hooks: the step it sees is validated already.
    assert [c["validated"] for c in calls if c["at"] == "after_step"] == [False, True, False, True]
    assert calls[5]["mIoU"] == metrics["mIoU"]
    # One metrics.jsonl line per validation, the last one metrics.json.
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [2, 4]
    assert lines[-1] == json.loads((out / "metrics.json").read_text())
    # The summaries read the validations from there, at full precision.
    curve = read_history(out)
    assert curve.val_miou == {2: lines[0]["mIoU"], 4: lines[1]["mIoU"]}
    assert curve.last_iteration == 4


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        (
            "[{_target_:collections.OrderedDict}]",
            r"trainer.hooks\[0\]: collections.OrderedDict is not",
        ),
        ("nope", "trainer.hooks must be a list"),
    ],
)
def test_a_wrong_hook_is_refused_by_name(
    shapes_root: Path, tmp_path: Path, hooks: str, message: str
) -> None:
    cfg = compose_cfg(tiny_train_overrides(shapes_root, tmp_path / "run", f"trainer.hooks={hooks}"))
    with pytest.raises(ConfigError, match=message):
        train(cfg)


def test_log_file_has_lines_not_bars(shapes_root: Path, tmp_path: Path) -> None:
    """``tools/train.py ... > log 2>&1``: no carriage return (tqdm shows its
    bars on a terminal only), an ``iter N/M`` line every log_interval."""
    out = tmp_path / "run"
    result = run_tool("train.py", tiny_train_overrides(shapes_root, out, "trainer.log_interval=2"))
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout + result.stderr
    assert "\r" not in text
    assert [
        line.split(" iter ")[1].split()[0] for line in text.splitlines() if " iter " in line
    ] == [
        "2/4",
        "4/4",
    ]
    assert "validation at iteration 4" in text
