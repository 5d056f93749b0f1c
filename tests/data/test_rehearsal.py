"""Full-resolution rehearsals: each dataset's whole pipeline on images of the
real size, with the default worker counts, as a user runs it.

data (official layout, preparation script) -> train with two validations
(prediction grid included) -> stopped, re-run of the same command resumes ->
tools/eval.py -> tools/infer.py on a folder. Every step runs as a real
process under a time bound, so a hang (e.g. a DataLoader worker deadlocked
on a thread pool it inherited) fails the test instead of stalling CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import ROOT, run_bounded, run_tool, tool_env
from trees import make_ade, make_cityscapes, make_pascal_context, make_sbd, make_voc

# Bounds per step, several times what each takes on a quiet 2-core CPU.
TRAIN_BOUND_S = 180
EVAL_BOUND_S = 180
INFER_BOUND_S = 120


def _train_and_resume(overrides: list[str], run: Path) -> None:
    """Trains to iteration 3, validating after each: the first process is
    stopped (SIGTERM) after its second validation (the one whose workers
    start after the prediction grid used OpenCV in this process), the same
    command resumes and validates a third time."""
    cmd = [sys.executable, str(ROOT / "tools/train.py"), *overrides]
    # Its own process group, so that a hang is killed with its DataLoader
    # workers (which would otherwise hold stderr open).
    proc = subprocess.Popen(
        cmd,
        env=tool_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log = run / "train.log"
    deadline = time.monotonic() + TRAIN_BOUND_S
    try:
        while not (log.is_file() and "validation at iteration 2" in log.read_text()):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no second validation within the bound: hung?"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=TRAIN_BOUND_S)
    finally:
        if proc.poll() is None:  # a hang: kill it so that the test fails, not CI
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr[-3000:]
    stopped = torch.load(run / "checkpoints/last.pth", weights_only=True)["iteration"]
    assert stopped == 2

    r = run_tool("train.py", overrides, timeout=TRAIN_BOUND_S)
    assert r.returncode == 0, r.stderr[-3000:]
    text = log.read_text()
    assert f"resumed from {run / 'checkpoints/last.pth'} at iteration {stopped}" in text
    assert "validation at iteration 3" in text
    assert torch.load(run / "checkpoints/last.pth", weights_only=True)["iteration"] == 3
    assert json.loads((run / "metrics.json").read_text())["iteration"] == 3
    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0})
    events.Reload()
    grids = events.Images("val/predictions")
    assert sorted(g.step for g in grids) == [1, 2, 3], "a prediction grid per validation"


def _common(root: Path, run: Path, experiment: str, crop: str) -> list[str]:
    """The recipe on the small model; only the training crop and batch are
    cut to CPU size (images, evaluation sizes and worker counts are real)."""
    return [
        f"experiment={experiment}",
        "model=ann_r18",
        f"dataset.root={root}",
        f"output_dir={run}",
        f"dataset.crop_size={crop}",
        "trainer.batch_size=2",
        "trainer.max_iters=3",
        "trainer.val_interval=1",
        "trainer.ckpt_interval=1",
        "trainer.log_interval=1",
    ]


def _model_args(common: list[str]) -> list[str]:
    """The overrides of ``common`` that eval and infer need too: the recipe,
    the model and its parts, the dataset root (not training's schedule)."""
    return [c for c in common if c.startswith(("experiment=", "model", "dataset.root="))]


def _prepare(script: str, *args: str) -> None:
    """Runs a dataset preparation script with 2 processes, bounded."""
    r = run_bounded([sys.executable, str(ROOT / "scripts" / script), *args, "--nproc", "2"], 120)
    assert r.returncode == 0, r.stderr[-3000:]


def _eval(common: list[str], run: Path, out: Path, *options: str) -> dict:
    """tools/eval.py on the run's best.pth with evaluator ``options``; its metrics.json."""
    ckpt = run / "checkpoints/best.pth"
    r = run_tool(
        "eval.py",
        [*_model_args(common), f"checkpoint={ckpt}", f"output_dir={out}", *options],
        timeout=EVAL_BOUND_S,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def _infer(common: list[str], ckpt: Path, images: Path, out: Path) -> list[Path]:
    r = run_tool(
        "infer.py",
        [*_model_args(common), f"checkpoint={ckpt}", f"input={images}", f"output_dir={out}"],
        timeout=INFER_BOUND_S,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return sorted((out / "predictions" / "masks").rglob("*.png"))


def _street_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colours with noise: compresses like a photo, unlike pure noise."""
    small = rng.integers(0, 256, (h // 32, w // 32, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))
    return np.clip(big.astype(np.int16) + rng.integers(-12, 12, big.shape), 0, 255).astype(np.uint8)


@pytest.mark.integration
def test_cityscapes_full_resolution(tmp_path: Path) -> None:
    root = make_cityscapes(
        tmp_path / "cityscapes",
        {"train": {"aachen": 2, "bochum": 1}, "val": {"frankfurt": 1}},
        size=(1024, 2048),
    )
    _prepare("prepare_cityscapes.py", str(root))
    run = tmp_path / "run"
    common = _common(root, run, "cityscapes_ann", "[256,512]")
    _train_and_resume(common, run)

    out = tmp_path / "eval"
    metrics = _eval(
        common,
        run,
        out,
        "evaluator=slide",
        "evaluator.scales=[0.5,0.75]",
        "evaluator.flip=true",
        "evaluator.save_predictions=cityscapes",
    )
    assert metrics["num_images"] == 1 and metrics["mode"] == "slide" and metrics["flip"]
    assert metrics["scales"] == [0.5, 0.75]
    preds = sorted((out / "predictions").rglob("*.png"))
    assert [p.relative_to(out / "predictions").as_posix() for p in preds] == [
        "frankfurt/frankfurt_000000_000019_leftImg8bit.png"
    ]
    label_ids = np.array(Image.open(preds[0]))
    assert label_ids.shape == (1024, 2048) and set(np.unique(label_ids)) <= set(range(34))

    masks = _infer(common, run / "checkpoints/last.pth", root / "leftImg8bit/val", tmp_path / "i")
    assert len(masks) == 1 and Image.open(masks[0]).size == (2048, 1024)


@pytest.mark.slow
def test_ade20k_variable_sizes(tmp_path: Path) -> None:
    """ADE20K-style photos of varying size and orientation; evaluation always
    rescales them (short side 512), so the main process's OpenCV pool runs
    for the prediction grid before the second validation's workers start."""
    sizes = [(512, 683), (768, 512), (1024, 1365), (480, 640), (600, 800)]
    ade = make_ade(tmp_path / "ade", {"training": 5, "validation": 3}, sizes=sizes)
    run = tmp_path / "run"
    common = _common(ade, run, "ade20k_ann", "[256,256]")
    _train_and_resume(common, run)

    out = tmp_path / "eval"
    metrics = _eval(common, run, out, "evaluator.flip=true", "evaluator.save_predictions=color")
    assert metrics["num_images"] == 3
    assert len(list((out / "predictions").rglob("*.png"))) == 6  # masks and overlays

    masks = _infer(common, run / "checkpoints/last.pth", ade / "images/validation", tmp_path / "i")
    assert [Image.open(m).size for m in masks] == [(683, 512), (512, 768), (1365, 1024)]


@pytest.mark.integration
def test_voc_aug_real_sizes(tmp_path: Path) -> None:
    """VOC 2012 + SBD at VOC's sizes (about 500×375), prepared with
    scripts/prepare_voc_aug.py, then the voc_aug recipe."""
    train, val = ["2008_000002", "2008_000003", "2008_000004"], ["2007_000032", "2007_000033"]
    sizes = [(375, 500), (500, 375), (333, 500), (500, 486), (281, 500)]
    voc = make_voc(tmp_path, train, val, sizes=sizes)
    sbd = make_sbd(tmp_path, voc, train, ["2008_000005"])
    _prepare("prepare_voc_aug.py", str(voc), str(sbd))
    run = tmp_path / "run"
    common = _common(tmp_path / "VOCdevkit", run, "voc_aug_ann", "[256,256]")
    _train_and_resume(common, run)

    metrics = _eval(
        common, run, tmp_path / "eval", "evaluator.scales=[0.75,1.0]", "evaluator.flip=true"
    )
    assert metrics["num_images"] == 2

    images = tmp_path / "photos"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes[:2]):
        Image.fromarray(_street_image(rng, h, w)).save(images / f"photo{i}.jpg")
    masks = _infer(common, run / "checkpoints/last.pth", images, tmp_path / "i")
    assert [Image.open(m).size for m in masks] == [(500, 375), (375, 500)]


@pytest.mark.slow
def test_pascal_context_real_sizes(tmp_path: Path) -> None:
    """VOC 2010 at its sizes with PASCAL in Detail annotations, prepared with
    scripts/prepare_pascal_context.py, then the authors' recipe. Its 14-pass
    test at short side 520 runs single scale in the validations and with two
    ratios + flip in tools/eval.py, to stay within the bounds on a CPU."""
    train, val = ["2008_000002", "2008_000003", "2010_000005"], ["2008_000008", "2009_000011"]
    sizes = [(375, 500), (500, 375), (333, 500), (500, 486), (281, 500)]
    voc, json_path, _ = make_pascal_context(tmp_path, train, val, sizes=sizes)
    _prepare("prepare_pascal_context.py", str(tmp_path / "VOCdevkit"), str(json_path))
    run = tmp_path / "run"
    common = _common(tmp_path, run, "pascal_context_ann", "[256,256]")
    common.append("model/decode_head=ann_r18")  # the recipe's head part is R-50/101-sized
    _train_and_resume([*common, "evaluator.scales=[1.0]", "evaluator.flip=false"], run)

    metrics = _eval(common, run, tmp_path / "eval", "evaluator.scales=[0.5,1.0]")
    assert metrics["num_images"] == 2 and metrics["flip"] and len(metrics["per_class"]) == 59
    out = tmp_path / "i"
    r = run_tool(
        "infer.py",
        [
            *_model_args(common),
            f"checkpoint={run / 'checkpoints/last.pth'}",
            f"input={voc / 'JPEGImages'}",
            f"output_dir={out}",
            "evaluator.scales=[1.0]",
            "evaluator.flip=false",
        ],
        timeout=INFER_BOUND_S,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    masks = sorted((out / "predictions" / "masks").rglob("*.png"))
    by_name = dict(zip([*train, *val], sizes, strict=True))
    assert [Image.open(m).size for m in masks] == [(w, h) for _, (h, w) in sorted(by_name.items())]


pytestmark = pytest.mark.timeout(900)
