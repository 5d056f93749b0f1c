"""Cityscapes export and tools/eval.py end to end on a tiny Cityscapes tree,
checked against cityscapesscripts' own evaluation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs_eval
from cityscapesscripts.helpers.csHelpers import getCoreImageFileName, getCsFileInfo
from cityscapesscripts.helpers.labels import labels as CS_LABELS
from cityscapesscripts.helpers.labels import trainId2label
from PIL import Image

from ann.commands.eval import evaluate
from ann.commands.train import train
from ann.data.cityscapes import CITYSCAPES_CLASSES, label_id_to_train_id_lut
from ann.errors import ConfigError
from ann.evaluation.cityscapes_export import result_path, to_label_ids
from ann.evaluation.predictions import PredictionWriter
from helpers import ROOT, compose_cfg

# labelIds drawn in the tiny tree: road, sidewalk, building, vegetation, sky,
# car, and the void ids unlabeled (0), ego vehicle (1), out of roi (3), static (4).
LABEL_IDS = (7, 8, 11, 21, 23, 26, 0, 1, 3, 4)
SPLITS = {"train": {"aachen": 2, "bochum": 1}, "val": {"frankfurt": 1, "lindau": 1}}
# (height, width) per split: val smaller, to keep the multi-pass evaluation quick on a CPU
SIZES = {"train": (128, 256), "val": (64, 128)}


def make_cityscapes_tree(root: Path) -> Path:
    """leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png and
    gtFine/.../*_gtFine_labelIds.png: blocks of LABEL_IDS, each painted a colour."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    for split, cities in SPLITS.items():
        height, width = SIZES[split]
        for city, count in cities.items():
            for i in range(count):
                name = f"{city}_{i:06d}_{19 + i:06d}"
                blocks = rng.choice(LABEL_IDS, size=(4, 8))
                label = np.kron(blocks, np.ones((height // 4, width // 8), np.uint8))
                label = label.astype(np.uint8)
                noise = rng.integers(-20, 21, (height, width, 3))
                image = (colours[label].astype(int) + noise).clip(0, 255).astype(np.uint8)
                img_dir = root / "leftImg8bit" / split / city
                gt_dir = root / "gtFine" / split / city
                img_dir.mkdir(parents=True, exist_ok=True)
                gt_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(img_dir / f"{name}_leftImg8bit.png")
                Image.fromarray(label, mode="L").save(gt_dir / f"{name}_gtFine_labelIds.png")
    return root


# --- export: mapping and names -----------------------------------------------


def test_train_id_to_label_id_inverts_the_dataset_mapping() -> None:
    train_ids = np.arange(19, dtype=np.uint8).reshape(1, 19)
    label_ids = to_label_ids(train_ids)
    for t in range(19):
        assert label_ids[0, t] == trainId2label[t].id  # cityscapesscripts' own table
        assert CITYSCAPES_CLASSES[t] == trainId2label[t].name
    assert np.array_equal(label_id_to_train_id_lut()[label_ids], train_ids)
    # and every evaluated labelId survives labelId -> trainId -> labelId
    evaluated = [lb.id for lb in CS_LABELS if lb.id >= 0 and not lb.ignoreInEval]
    assert len(evaluated) == 19
    ids = np.asarray(evaluated, np.uint8)
    assert np.array_equal(to_label_ids(label_id_to_train_id_lut()[ids]), ids)


def test_result_names_match_the_benchmark(tmp_path: Path) -> None:
    gt_names = [
        "frankfurt_000000_000294_gtFine_labelIds.png",
        "munster_000042_000019_gtFine_labelIds.png",
        "berlin_000123_000019_gtFine_labelIds.png",
    ]
    writer = PredictionWriter("cityscapes", tmp_path, CITYSCAPES_CLASSES, ())
    for gt in gt_names:
        core = getCoreImageFileName(gt)
        path = writer.write(core, np.zeros((4, 8), np.uint8))
        assert path == tmp_path / result_path(core)
        info = getCsFileInfo(str(path))
        assert (info.city, info.type, info.ext) == (core.split("_")[0], "leftImg8bit", "png")
        assert path.parent.name == info.city
    # the official lookup finds exactly our file for each ground truth
    cs_eval.args.predictionPath = str(tmp_path)
    cs_eval.args.predictionWalk = None
    for gt in gt_names:
        found = cs_eval.getPrediction(cs_eval.args, f"/gt/{gt.split('_')[0]}/{gt}")
        assert Path(found) == tmp_path / result_path(getCoreImageFileName(gt))
    with pytest.raises(ConfigError, match="CITY_SEQ_FRAME"):
        result_path("00001")
    with pytest.raises(ConfigError, match="19 Cityscapes"):
        PredictionWriter("cityscapes", tmp_path, ("a", "b"), ())


# --- end to end --------------------------------------------------------------

SMALL = [
    "model=ann_r18",
    "model.backbone.pretrained=null",
    "dataset=cityscapes",
    "dataset.val.transforms.scale=[128,64]",
    "evaluator.num_workers=0",
]


@pytest.fixture(scope="module")
def cityscapes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny Cityscapes tree and a checkpoint of the small model trained on it."""
    root = make_cityscapes_tree(tmp_path_factory.mktemp("data") / "cityscapes")
    out = tmp_path_factory.mktemp("cs_run")
    cfg = compose_cfg(
        [
            *SMALL,
            f"dataset.root={root}",
            f"output_dir={out}",
            "dataset.crop_size=[64,128]",
            "dataset.train.transforms.scale=[256,128]",
            "trainer.max_iters=2",
            "trainer.val_interval=2",
            "trainer.ckpt_interval=2",
            "trainer.batch_size=2",
            "trainer.num_workers=0",
            "trainer.num_vis=1",
            "scheduler.warmup_iters=0",
        ]
    )
    train(cfg)
    return root, out / "checkpoints" / "last.pth"


def run_eval(*overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "eval.py"), *overrides],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


EVAL_TTA = [
    "evaluator.mode=slide",
    "evaluator.crop_size=[48,96]",  # 4 overlapping windows at 1.0, padded at 0.5
    "evaluator.stride=[32,64]",
    "evaluator.scales=[0.5,1.0]",
    "evaluator.flip=true",
    "evaluator.save_predictions=cityscapes",
]


def test_evaluate_slide_ms_flip_cityscapes_export(
    cityscapes_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """In process (fast): evaluate(cfg) as tools/eval.py calls it."""
    root, ckpt = cityscapes_run
    out = tmp_path / "eval"
    cfg = compose_cfg(
        [*SMALL, f"dataset.root={root}", f"checkpoint={ckpt}", f"output_dir={out}", *EVAL_TTA],
        "eval",
    )
    metrics = evaluate(cfg)
    assert metrics == json.loads((out / "metrics.json").read_text())
    check_outputs(root, out)


@pytest.mark.slow
def test_eval_tool_slide_ms_flip_cityscapes_export(
    cityscapes_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """The same through tools/eval.py in a subprocess."""
    root, ckpt = cityscapes_run
    out = tmp_path / "eval"
    proc = run_eval(
        *SMALL, f"dataset.root={root}", f"checkpoint={ckpt}", f"output_dir={out}", *EVAL_TTA
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_outputs(root, out)


def check_outputs(root: Path, out: Path) -> None:
    """metrics.json/csv, eval.log and one labelId PNG per val image, laid out
    for the benchmark; the official evaluation of those files gives our mIoU."""
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "slide" and metrics["flip"] is True
    assert metrics["scales"] == [0.5, 1.0] and metrics["num_images"] == 2
    assert metrics["iteration"] == 2
    assert set(metrics["per_class"]) == set(CITYSCAPES_CLASSES)
    # classes absent from the tree and never predicted are null
    assert any(row["IoU"] is None for row in metrics["per_class"].values())
    assert (out / "metrics.csv").read_text().startswith("class,IoU,Acc")
    assert "road" in (out / "eval.log").read_text()

    gts = sorted((root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    preds = sorted((out / "predictions").rglob("*.png"))
    assert len(preds) == len(gts) == 2
    for gt, pred in zip(gts, preds, strict=True):
        assert pred.relative_to(out / "predictions").parts[0] == gt.parent.name  # {city}/
        assert pred.name == getCoreImageFileName(gt.name) + "_leftImg8bit.png"
        img = Image.open(pred)
        assert img.mode == "L" and img.size == Image.open(gt).size
        assert set(np.unique(np.asarray(img))) <= {lb.id for lb in CS_LABELS if lb.trainId < 19}

    args = cs_eval.args
    args.evalInstLevelScore = False
    args.JSONOutput = False
    args.quiet = True
    args.predictionPath = str(out / "predictions")
    args.predictionWalk = None
    found = [cs_eval.getPrediction(args, str(gt)) for gt in gts]
    result = cs_eval.evaluateImgLists(found, [str(gt) for gt in gts], args)
    assert result["averageScoreClasses"] == pytest.approx(metrics["mIoU"], abs=1e-9)
    for name, row in metrics["per_class"].items():
        theirs = result["classScores"][name]
        assert (row["IoU"] is None) == np.isnan(theirs), name
        if row["IoU"] is not None:
            assert row["IoU"] == pytest.approx(theirs, abs=1e-9), name
