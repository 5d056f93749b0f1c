"""Typed config groups: a wrong type or range is one line naming the key,
the value and what is expected, before any data is read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ann.config.schema import TOP_GROUPS, check_config
from ann.errors import ConfigError
from helpers import CONFIG_DIR, ROOT, compose_cfg, tool_env

EXPERIMENT_DIR = CONFIG_DIR / "experiment"
# ablation/cs_r101_apnb and the like too: every file `experiment=` can name.
EXPERIMENTS = sorted(
    p.relative_to(EXPERIMENT_DIR).with_suffix("").as_posix() for p in EXPERIMENT_DIR.rglob("*.yaml")
)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("config", ["train", "eval"])
def test_every_shipped_experiment_fits_the_schema(experiment: str, config: str) -> None:
    overrides = [f"experiment={experiment}"] + (["checkpoint=x.pth"] if config == "eval" else [])
    # eval composes configs/base.yaml's groups only (no trainer, optimizer, scheduler)
    groups = TOP_GROUPS if config == "train" else ("model", "dataset", "evaluator")
    check_config(compose_cfg(overrides, config), groups)


BAD = {
    "trainer.max_iters=abc": "trainer.max_iters='abc': expected an integer ≥ 1 (got str)",
    "trainer.max_iters=0": "trainer.max_iters=0: expected an integer ≥ 1 (got int)",
    "trainer.val_interval=2.5": "trainer.val_interval=2.5: expected an integer ≥ 1",
    "trainer.num_workers=-1": "trainer.num_workers=-1: expected an integer ≥ 0",
    "trainer.amp=maybe": "trainer.amp='maybe': expected true or false",
    "trainer.clip_grad=-1": "trainer.clip_grad=-1: expected null or a number > 0",
    "trainer.dist_timeout_min=0": "trainer.dist_timeout_min=0: expected a number > 0",
    "optimizer.lr=-0.01": "optimizer.lr=-0.01: expected a number > 0 (got float)",
    "optimizer.momentum=1.5": "optimizer.momentum=1.5: expected a number ≥ 0 and < 1",
    "scheduler.power=abc": "scheduler.power='abc': expected a number > 0",
    "scheduler.warmup_ratio=2": "scheduler.warmup_ratio=2: expected a number > 0 and ≤ 1",
    "evaluator.mode=slid": "evaluator.mode='slid': expected one of whole, slide",
    "evaluator.scales=[]": "evaluator.scales=[]: expected a non-empty list of numbers > 0",
    "evaluator.scales=[1.0,-1]": "evaluator.scales=[1.0, -1]: expected a non-empty list",
    "evaluator.save_predictions=png": "evaluator.save_predictions='png': expected null or one of",
    "evaluator.mode=slide": "evaluator.crop_size must be [height, width]",
    "dataset.crop_size=[512]": "dataset.crop_size=[512]: expected null or a list of two integers",
    "dataset.crop_size=[2048,2048]": "dataset.crop_size=[2048, 2048]: larger than the base scale",
    "dataset.ignore_index=300": "dataset.ignore_index=300: expected an integer ≥ 0 and ≤ 255",
    "dataset.num_classes=zero": "dataset.num_classes='zero': expected an integer ≥ 1",
    # The model's and the optimizer's parameter-group keys users override.
    "model.backbone.stem_channels=abc": (
        "model.backbone.stem_channels='abc': expected an integer ≥ 1 (got str)"
    ),
    "model.backbone.maxpool_ceil=maybe": (
        "model.backbone.maxpool_ceil='maybe': expected true or false (got str)"
    ),
    "model.backbone.pretrained=123": (
        "model.backbone.pretrained=123: expected null or a string (got int)"
    ),
    "optimizer.paramwise.head_lr_mult=-5": (
        "optimizer.paramwise.head_lr_mult=-5: expected a number > 0 (got int)"
    ),
    "optimizer.paramwise.norm_decay=no": "optimizer.paramwise.norm_decay='no': expected true",
    "+optimizer.paramwise.lr_mult=2": "optimizer.paramwise.lr_mult: unknown key (expected one of",
    "model.backbone.depth=51": "model.backbone.depth=51: expected one of 18, 34, 50, 101, 152",
    "model.backbone.output_stride=4": "model.backbone.output_stride=4: expected one of 8, 16, 32",
    "model.backbone.stem=wide": "model.backbone.stem='wide': expected one of deep, standard",
    "model.backbone.frozen_stages=-2": "model.backbone.frozen_stages=-2: expected an integer ≥ -1",
    "model.decode_head.channels=0": "model.decode_head.channels=0: expected an integer ≥ 1",
    "model.decode_head.key_channels=1.5": "model.decode_head.key_channels=1.5: expected an integer",
    "model.decode_head.dropout=1": "model.decode_head.dropout=1: expected a number ≥ 0 and < 1",
    "model.decode_head.pool_sizes=[1,0]": (
        "model.decode_head.pool_sizes=[1, 0]: expected a non-empty list of integers ≥ 1"
    ),
    "model.aux_head.dropout=-0.1": "model.aux_head.dropout=-0.1: expected a number ≥ 0",
    "model.aux_weight=-1": "model.aux_weight=-1: expected a number ≥ 0",
    "model.align_corners=1": "model.align_corners=1: expected true or false (got int)",
    # Input normalisation, added with "+" where a recipe does not set it.
    "+dataset.train.transforms.mean=[0.5,0.5]": (
        "dataset.train.transforms.mean=[0.5, 0.5]: expected a list of 3 numbers ≥ 0 and ≤ 1"
    ),
    "+dataset.val.transforms.std=[0,1,1]": (
        "dataset.val.transforms.std=[0, 1, 1]: expected a list of 3 numbers > 0"
    ),
    "+dataset.test.transforms.channel_order=rgbx": (
        "dataset.test.transforms.channel_order='rgbx': expected one of rgb, bgr"
    ),
}


@pytest.mark.parametrize("override", BAD)
def test_bad_value_names_key_value_and_expectation(override: str) -> None:
    cfg = compose_cfg(["experiment=cityscapes_ann", override])
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert str(info.value).startswith(BAD[override]), str(info.value)
    assert "\n" not in str(info.value)


GOOD = [
    "model.backbone.pretrained=null",
    "model.backbone.pretrained=torchvision",
    "model.backbone.stem_channels=128",
    "model.backbone.frozen_stages=4",
    "optimizer.paramwise.head_lr_mult=10",
    "model.decode_head.pool_sizes=[1,2,3,6]",
    "~model/aux_head",  # a nested group is checked only when present
    "model=fcn_r50",  # an FCN head has no key_channels: optional keys are skipped
    "+dataset.train.transforms.mean=[0.5,0.5,0.5]",
    "+dataset.train.transforms.channel_order=bgr",
]


@pytest.mark.parametrize("override", GOOD)
def test_good_model_values_pass(override: str) -> None:
    check_config(compose_cfg(["experiment=cityscapes_ann", override]))


def test_a_group_covers_its_nested_groups() -> None:
    """eval and infer name the groups they use; naming "model" checks the
    backbone and the heads too, and leaving it out skips them."""
    cfg = compose_cfg(["experiment=cityscapes_ann", "model.backbone.stem_channels=abc"])
    check_config(cfg, ("evaluator", "dataset"))
    with pytest.raises(ConfigError, match=r"^model\.backbone\.stem_channels='abc'"):
        check_config(cfg, ("model",))


@pytest.mark.parametrize(
    ("tool", "override", "expected"),
    [
        # Before, a TypeError from inside PolyLR.
        ("train.py", "trainer.max_iters=abc", "trainer.max_iters='abc': expected an integer ≥ 1"),
        ("eval.py", "evaluator.mode=slid", "evaluator.mode='slid': expected one of whole, slide"),
    ],
)
def test_tools_report_the_type_before_reading_data(
    tool: str, override: str, expected: str, tmp_path: Path
) -> None:
    """One line, exit 2, before the (absent) dataset or checkpoint is read."""
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / tool),
            "experiment=cityscapes_ann",
            f"dataset.root={tmp_path / 'absent'}",
            *([f"checkpoint={tmp_path / 'absent.pth'}"] if tool == "eval.py" else []),
            override,
            f"output_dir={tmp_path / 'out'}",
        ],
        env=tool_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: {expected} (got str)"]
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_evaluator_choices_are_spelled_once() -> None:
    """The schema's evaluator keys and the Evaluator's own check use the
    tuples of ann/evaluation/options.py: a choice added there is accepted by
    both, one missing there by neither."""
    import typing

    from ann.config.schema import EvaluatorSchema
    from ann.evaluation import options
    from ann.evaluation.evaluator import Evaluator

    hints = typing.get_type_hints(EvaluatorSchema)
    assert typing.get_args(hints["mode"]) == options.MODES
    assert typing.get_args(hints["average"]) == options.AVERAGES
    assert typing.get_args(hints["amp_dtype"]) == options.AMP_DTYPES
    assert typing.get_args(typing.get_args(hints["save_predictions"])[0]) == options.FORMATS
    for key, value in (("mode", "tiles"), ("average", "vote"), ("save_predictions", "jpeg")):
        with pytest.raises(ConfigError, match=f"evaluator.{key} must be"):
            Evaluator(**{key: value})
        with pytest.raises(ConfigError, match=f"evaluator.{key}"):
            check_config(compose_cfg([f"evaluator.{key}={value}"]), ("evaluator",))
