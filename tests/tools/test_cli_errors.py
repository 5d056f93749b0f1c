"""A user's typos and omissions: one ``error:`` line with the closest valid
names and exit 2, from the tools and from the Python API; ``--help`` that
explains the tool (ann/cli.py, ann/config/suggest.py)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from ann import Segmenter
from ann.cli import check_command_line, help_text, quote_path_values
from ann.errors import ConfigError
from helpers import ROOT, tool_env

CASES = [
    ("train.py", "train", ["experiment=cityscapes_annn"], "did you mean cityscapes_ann?"),
    (
        "train.py",
        "train",
        ["experiment=demo", "trainer.max_itres=5"],
        "did you mean trainer.max_iters?",
    ),
    ("train.py", "train", ["experiment=demo", "model=ann_r77"], "no such model option"),
    ("train.py", "train", ["experiment=demo", "modell=ann_r50"], "did you mean model?"),
    ("train.py", "train", ["experiment=ablation/cs_r101_apnb_n1_"], "ablation/cs_r101_apnb_n1"),
    ("train.py", "train", ["-m", "experiment=demo", "optimizer.lrr=0.1,0.2"], "optimizer.lr?"),
    (
        "train.py",
        "train",
        ["trainer.max_iters=5"],
        "name an experiment: python tools/train.py experiment=NAME",
    ),
    (
        "train.py",
        "train",
        ["experiment=demo", "trainer.max_iters=[1"],
        "cannot parse the command line",
    ),
    (
        "eval.py",
        "eval",
        ["experiment=cityscapes_ann", "checkpoint=x.pth", "trainer.num_workers=0"],
        "did you mean evaluator.num_workers?",
    ),
    (
        "eval.py",
        "eval",
        ["experiment=demo", "checkpoint=x.pth", "trainer.num_workers=0"],
        "a training key, which tools/eval.py does not read; did you mean evaluator.num_workers?",
    ),
    (
        "eval.py",
        "eval",
        ["experiment=cityscapes_ann"],
        "checkpoint is required: add checkpoint=PATH",
    ),
    ("infer.py", "infer", ["experiment=demo", "checkpoint=x.pth"], "input is required"),
]


@pytest.mark.parametrize(("tool", "config", "args", "expected"), CASES)
def test_one_line_with_the_closest_names(
    tool: str, config: str, args: list[str], expected: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as info:
        check_command_line(tool, config, args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert expected in err, err


def test_good_command_lines_pass() -> None:
    check_command_line("train.py", "train", ["experiment=demo", "optimizer.lr=0.1"])
    check_command_line("train.py", "train", ["-m", "experiment=demo", "trainer.seed=0,1,2"])
    check_command_line("train.py", "train", ["model=ann_r18", "dataset=shapes"])  # composed
    paths = quote_path_values(["experiment=demo", "checkpoint=a=1/best.pth"])  # as prepare_argv
    check_command_line("eval.py", "eval", paths)
    check_command_line("train.py", "train", ["experiment=demo", "--cfg", "job"])  # Hydra's own


@pytest.mark.integration  # a subprocess; the check itself is tested in-process above
def test_typo_through_the_tool_is_one_line() -> None:
    """The real entry point: one stderr line, exit 2, no Hydra page."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools/train.py"), "experiment=cityscapes_annn"],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: experiment=cityscapes_annn: no such experiment option; did you mean "
        "cityscapes_ann? (python tools/train.py --help lists them)"
    ]


@pytest.mark.parametrize(
    ("tool", "config"),
    [
        ("train.py", "train"),
        ("eval.py", "eval"),
        ("infer.py", "infer"),
        ("export.py", "export"),
        ("browse_dataset.py", "browse"),
    ],
)
def test_help_explains_the_tool(tool: str, config: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / "tools" / tool).read_text()))
    text = help_text(tool, config, doc)
    lines = text.splitlines()
    assert f"python tools/{tool}" in text and "Required:" in text
    assert "  experiment: " in text and "cityscapes_ann" in text
    assert ("  trainer: default" in text) == (config == "train")
    assert "_target_" not in text and "???" not in text  # no config dump
    assert len(lines) < 60


@pytest.mark.integration  # a subprocess; test_docs runs each tool's --help in-process
def test_help_through_the_tool() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools/eval.py"), "--help"],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=120,
    )
    assert r.returncode == 0
    assert r.stdout.startswith("Evaluate a checkpoint")
    assert "powered by Hydra" not in r.stdout


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"experiment": "cityscapes_annn"}, "did you mean cityscapes_ann?"),
        ({"overrides": ["evaluator.flip=maybe"]}, "evaluator.flip='maybe': expected true or false"),
        ({"overrides": ["evaluator.flipp=true"]}, "did you mean evaluator.flip?"),
    ],
)
def test_python_api_raises_the_same_lines(kwargs: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Segmenter.from_config(**{"experiment": "demo", **kwargs})
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("evaluator.flip=maybe", "expected true or false"),
        ("evaluator.flipp=true", "evaluator.flip?"),
    ],
)
def test_from_checkpoint_checks_overrides(trained_demo, override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Segmenter.from_checkpoint(trained_demo / "checkpoints/best.pth", overrides=[override])
    assert expected in str(info.value) and "\n" not in str(info.value)
