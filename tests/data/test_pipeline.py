"""One dataset's whole pipeline in this process, at the real image sizes with
the default worker counts: VOC 2012 + SBD at VOC's sizes (about 500×375) →
scripts/prepare_voc_aug.py → training with three validations (workers started
again for each, after the prediction grid used OpenCV in this process) and a
resume → evaluation with scales and flip → inference on a folder.

The same pipeline as separate processes, with a SIGTERM, is
tests/data/test_rehearsal.py (integration tier); this one keeps the fast tier's
real-size coverage without five interpreter start-ups.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import prepare_voc_aug
from ann.commands.eval import evaluate
from ann.commands.infer import infer
from ann.commands.train import train
from helpers import compose_cfg
from trees import make_sbd, make_voc

TRAIN, VAL = ["2008_000002", "2008_000003", "2008_000004"], ["2007_000032", "2007_000033"]
SIZES = [(375, 500), (500, 375), (333, 500), (500, 486), (281, 500)]


@pytest.mark.timeout(600)
def test_voc_aug_pipeline_at_real_sizes(tmp_path: Path) -> None:
    voc = make_voc(tmp_path, TRAIN, VAL, sizes=SIZES)
    sbd = make_sbd(tmp_path, voc, TRAIN, ["2008_000005"])
    assert prepare_voc_aug.main([str(voc), str(sbd), "--nproc", "2"]) == 0

    run = tmp_path / "run"
    common = [
        "experiment=voc_aug_ann",
        "model=ann_r18",
        f"dataset.root={tmp_path / 'VOCdevkit'}",
        f"output_dir={run}",
    ]
    # Only the training crop and batch are cut to CPU size; the worker counts
    # (trainer 4, evaluator 2) and the evaluation sizes are the recipe's.
    schedule = [
        "dataset.crop_size=[256,256]",
        "trainer.batch_size=2",
        "trainer.val_interval=1",
        "trainer.ckpt_interval=1",
        "trainer.log_interval=1",
    ]
    cfg = compose_cfg([*common, *schedule, "trainer.max_iters=2"])
    assert cfg.trainer.num_workers > 0 and cfg.evaluator.num_workers > 0
    train(cfg)
    assert torch.load(run / "checkpoints/last.pth", weights_only=True)["iteration"] == 2
    train(compose_cfg([*common, *schedule, "trainer.max_iters=3"]))  # resumes at 2
    log = (run / "train.log").read_text()
    assert "resumed from" in log and "at iteration 2" in log
    assert all(f"validation at iteration {i}" in log for i in (1, 2, 3))
    assert json.loads((run / "metrics.json").read_text())["iteration"] == 3

    ckpt = run / "checkpoints/best.pth"
    out = tmp_path / "eval"
    options = ["evaluator.scales=[0.75,1.0]", "evaluator.flip=true"]
    cfg = compose_cfg([*common[:3], f"checkpoint={ckpt}", f"output_dir={out}", *options], "eval")
    metrics = evaluate(cfg)
    assert metrics["num_images"] == 2 and metrics["flip"] and metrics["scales"] == [0.75, 1.0]
    assert json.loads((out / "metrics.json").read_text())["mIoU"] == metrics["mIoU"]

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES[:2]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(photos / f"p{i}.jpg")
    masks = infer(
        compose_cfg(
            [*common[:3], f"checkpoint={ckpt}", f"input={photos}", f"output_dir={tmp_path / 'i'}"],
            "infer",
        )
    )
    assert [Image.open(m).size for m in sorted(masks)] == [(500, 375), (375, 500)]
