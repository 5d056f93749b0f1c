"""Paths on the command line and on disk: a sweep folder's ``=`` works
unquoted in ``checkpoint=`` and the other path keys, path keys do not name
sweep folders, and ANN_DATA / ANN_OUTPUTS move data and outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from ann.cli import PATH_KEYS, quote_path_values
from helpers import checkpoint_overrides, compose_cfg, run_tool

SWEEP_CKPT = (
    "outputs/multirun/demo/optimizer.lr=0.01/trainer.batch_size=2/seed=0/checkpoints/best.pth"
)


def parsed(arg: str) -> object:
    """The value Hydra's override grammar reads from ``arg`` (raises if it refuses it)."""
    return OverridesParser.create().parse_override(arg).value()


def test_unquoted_equals_is_refused_by_hydra_itself() -> None:
    """Why the rewrite exists: the grammar's own error on a sweep folder path."""
    with pytest.raises(HydraException, match="mismatched input '='"):
        parsed(f"checkpoint={SWEEP_CKPT}")


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        (f"checkpoint={SWEEP_CKPT}", SWEEP_CKPT),
        ("trainer.load_from=runs/lr=0.1/last.pth", "runs/lr=0.1/last.pth"),
        ("model.backbone.pretrained=w/a=b.pth", "w/a=b.pth"),
        ("++dataset.root=/data/set=2", "/data/set=2"),
        ("output_dir=/tmp/eval(1)", "/tmp/eval(1)"),
        ("input=images/[ab]*.png", "images/[ab]*.png"),
        ("checkpoint=it's=1/x.pth", "it's=1/x.pth"),
        ("checkpoint=C:\\runs\\lr=1\\", "C:\\runs\\lr=1\\"),
        ("checkpoint=${paths.output_root}/a=1/b.pth", "${paths.output_root}/a=1/b.pth"),
    ],
)
def test_path_values_are_quoted(arg: str, value: str) -> None:
    (out,) = quote_path_values([arg])
    assert parsed(out) == value


def test_other_arguments_pass_unchanged() -> None:
    args = [
        "experiment=demo",
        "checkpoint=plain/best.pth",
        "checkpoint='already=quoted.pth'",
        'checkpoint="a=b.pth"',
        "optimizer.lr=0.01,0.02",
        "-m",
        "--cfg",
        "job",
        "trainer.resume=false",
        "evaluator.scales=[0.75,1.0]",
        "checkpoint=",
    ]
    assert quote_path_values(args) == args


def test_a_sweep_over_paths_keeps_its_values() -> None:
    (out,) = quote_path_values(["checkpoint=a/lr=1/b.pth,c/lr=2/d.pth"])
    override = OverridesParser.create().parse_override(out)
    assert override.is_sweep_override()
    # The sweeper hands each job "checkpoint=<string>", which the job parses again.
    jobs = [parsed(f"checkpoint={v}") for v in override.sweep_string_iterator()]
    assert jobs == ["a/lr=1/b.pth", "c/lr=2/d.pth"]


def has_key(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` is in ``cfg``, also with a mandatory ``???`` value
    (which OmegaConf's ``in`` counts as absent)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node.keys()


def test_every_path_key_exists_in_some_config() -> None:
    """PATH_KEYS names real keys (a renamed key would silently stop being quoted)."""
    names = ("train", "eval", "infer", "browse")
    cfgs = [compose_cfg(["experiment=demo"], name) for name in names]
    for key in PATH_KEYS:
        if not key.startswith("hydra."):
            assert any(has_key(c, key) for c in cfgs), key


def test_path_keys_do_not_name_sweep_folders() -> None:
    overrides = [
        "experiment=demo",
        "optimizer.lr=0.01",
        "trainer.batch_size=2",
        "model.backbone.pretrained=/path/to/3x3resnet101-imagenet.pth",
        "trainer.load_from=/runs/a/last.pth",
        "dataset.root=/data/shapes",
        "output_dir=/tmp/out",
        "trainer.seed=1",
    ]
    cfg = compose_cfg(overrides, hydra=True)
    assert cfg.hydra.job.override_dirname == "optimizer.lr=0.01/trainer.batch_size=2"
    cfg = compose_cfg(["checkpoint=/a/b.pth"], "eval", hydra=True)
    assert cfg.hydra.job.override_dirname == ""


def test_env_vars_move_data_and_outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ANN_DATA", raising=False)
    monkeypatch.delenv("ANN_OUTPUTS", raising=False)
    cfg = compose_cfg(["experiment=demo"])
    assert (cfg.paths.data_dir, cfg.paths.output_root) == ("data", "outputs")
    assert cfg.dataset.root == "data/shapes" and cfg.output_dir == "outputs/demo"
    monkeypatch.setenv("ANN_DATA", str(tmp_path / "datasets"))
    monkeypatch.setenv("ANN_OUTPUTS", str(tmp_path / "runs"))
    cfg = compose_cfg(["experiment=demo"])
    assert cfg.dataset.root == str(tmp_path / "datasets" / "shapes")
    assert cfg.output_dir == str(tmp_path / "runs" / "demo")
    hydra_cfg = compose_cfg(["experiment=demo"], hydra=True)
    assert hydra_cfg.hydra.sweep.dir == str(tmp_path / "runs" / "multirun" / "demo")
    # A key on the command line wins over the variable.
    cfg = compose_cfg(["experiment=demo", "paths.data_dir=/elsewhere"])
    assert cfg.dataset.root == "/elsewhere/shapes"


@pytest.mark.integration
def test_eval_tool_takes_a_sweep_checkpoint_unquoted(
    trained_demo: Path, shapes_root: Path, tmp_path: Path
) -> None:
    """tools/eval.py with a sweep job's checkpoint and output folder, both with
    "=" and typed as a shell user would, without Hydra's quotes."""
    ckpt = tmp_path / SWEEP_CKPT
    ckpt.parent.mkdir(parents=True)
    shutil.copy(trained_demo / "checkpoints" / "best.pth", ckpt)
    out = tmp_path / "eval" / "trainer.batch_size=2"
    overrides = checkpoint_overrides(shapes_root, ckpt, out, "evaluator.num_workers=0")
    assert f"checkpoint={ckpt}" in overrides  # unquoted
    proc = run_tool("eval.py", overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 6
    saved = OmegaConf.load(out / "config.yaml")
    assert saved.checkpoint == str(ckpt)
