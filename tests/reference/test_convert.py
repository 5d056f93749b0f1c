"""Published checkpoints: each source layout converts, loads into the matching
experiment's model and gives the source implementation's logits (whole image
and sliding window, eval mode); bad inputs get one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ann.commands.convert import main as convert_main
from ann.convert import convert
from ann.engine.checkpoint import load_checkpoint
from ann.errors import CheckpointError
from ann.evaluation.scores import infer_slide
from helpers import ROOT, compose_cfg, run_tool
from reference import mmseg_ann, official_ann
from reference.published import model_for, save_mmseg, save_official
from reference.weights import randomise
from trees import make_cityscapes


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.double() - ref.double()).abs().max() / ref.double().abs().max())


@pytest.fixture(scope="module")
def mmseg_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    ref = randomise(mmseg_ann.EncoderDecoder(depth=50, num_classes=19)).eval()
    return ref, save_mmseg(ref, tmp_path_factory.mktemp("mmseg") / "ann_r50.pth")


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    ref = randomise(
        official_ann.AsymmetricNonLocalNetwork(num_classes=19, depth=101), seed=1
    ).eval()
    return ref, save_official(ref, tmp_path_factory.mktemp("official") / "annn.pth")


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_mmseg_logits_equal_the_source(
    mmseg_file: tuple[nn.Module, Path], tmp_path: Path, dtype: torch.dtype, tol: float
) -> None:
    ref, src = mmseg_file
    out = tmp_path / "converted.pth"
    done = convert("mmseg", src)
    torch.save(done.checkpoint(src), out)
    assert (done.depth, done.num_classes, done.aux_channels) == (50, 19, 256)
    assert done.experiments == ["cityscapes_ann"]  # from meta["config"]: not 769
    ref = ref.to(dtype)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 65, 97, dtype=dtype)
    with torch.no_grad():
        # 512x1024 recipe: whole image, align_corners=False.
        ours = model_for("cityscapes_ann", out).to(dtype)
        ref.align_corners = False
        assert rel_err(ours(x), ref.encode_decode(x)) < tol
        # 769x769 recipe: sliding window, align_corners=True.
        ours = model_for("cityscapes_ann_769", out).to(dtype)
        ref.align_corners = True
        slide = infer_slide(ours, x, (65, 65), (43, 43))
        assert rel_err(slide, ref.slide_inference(x, (65, 65), (43, 43))) < tol


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.float64, 1e-7)])
def test_official_logits_equal_the_source(
    official_file: tuple[nn.Module, Path], tmp_path: Path, dtype: torch.dtype, tol: float
) -> None:
    """The biases folded into BN are rounded once to float32, so float64
    agrees to about 1e-8 rather than to the last bit."""
    ref, src = official_file
    out = tmp_path / "converted.pth"
    done = convert("official", src)
    torch.save(done.checkpoint(src), out)
    assert (done.depth, done.stem_channels, done.aux_channels) == (101, 128, 512)
    assert done.experiments == ["cityscapes_ann_official"]
    ref = ref.to(dtype)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 65, 97, dtype=dtype)  # ceil-mode pooling: odd feature sizes
    ours = model_for("cityscapes_ann_official", out).to(dtype)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)[1]) < tol
        crop = official_ann.crop_predict(ref, x, crop=65, ratio=0.667)
        assert rel_err(infer_slide(ours, x, (65, 65), (43, 43)), crop) < tol


def test_converted_file_is_a_checkpoint_of_this_project(
    mmseg_file: tuple[nn.Module, Path], tmp_path: Path
) -> None:
    ref, src = mmseg_file
    out = tmp_path / "ann.pth"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools/convert.py"), "mmseg", str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}: ANN ResNet-50, 19 classes" in proc.stdout
    assert f"python tools/eval.py experiment=cityscapes_ann checkpoint={out}" in proc.stdout
    state = load_checkpoint(out)
    assert state["iteration"] == 0 and state["converted_from"]["source"] == "mmseg"
    # The APNB's twice-saved projection is kept once; nothing else is lost.
    assert len(state["model"]) == len(ref.state_dict()) - 6


def test_load_from_a_converted_checkpoint_fine_tunes(
    mmseg_file: tuple[nn.Module, Path], tmp_path: Path
) -> None:
    from ann.commands.train import train

    _, src = mmseg_file
    out = tmp_path / "ann.pth"
    torch.save(convert("mmseg", src).checkpoint(src), out)
    root = make_cityscapes(tmp_path / "cs", {"train": {"aachen": 2}, "val": {"ulm": 1}}, (64, 128))
    run = tmp_path / "run"
    train(
        compose_cfg(
            [
                "experiment=cityscapes_ann",
                f"dataset.root={root}",
                f"output_dir={run}",
                f"trainer.load_from={out}",
                "trainer.max_iters=1",
                "trainer.batch_size=2",
                "trainer.num_workers=0",
                "evaluator.num_workers=0",
                "trainer.num_vis=1",
                "dataset.crop_size=[64,64]",
                "dataset.scale=[128,64]",
            ]
        )
    )
    assert f"loaded weights from {out}" in (run / "train.log").read_text()
    assert json.loads((run / "metrics.json").read_text())["iteration"] == 1


def convert_and_eval(
    source: str, src: Path, tmp: Path, size: tuple[int, int], overrides: list[str], timeout: int
) -> tuple[Path, Path]:
    """tools/convert.py, then tools/eval.py with ``overrides`` on a Cityscapes
    tree of two val images of ``size``; returns (tree root, eval output dir)."""
    out = tmp / "converted.pth"
    assert run_tool("convert.py", [source, str(src), str(out)], timeout=120).returncode == 0
    root = make_cityscapes(tmp / "cs", {"train": {"aachen": 1}, "val": {"ulm": 2}}, size)
    run = tmp / "eval"
    args = [*overrides, f"checkpoint={out}", f"dataset.root={root}", f"output_dir={run}"]
    proc = run_tool("eval.py", args, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_images"] == 2 and len(metrics["per_class"]) == 19
    return root, run


@pytest.mark.integration
def test_eval_tool_on_a_converted_mmseg_model(
    mmseg_file: tuple[nn.Module, Path], tmp_path: Path
) -> None:
    """tools/convert.py then tools/eval.py with the matching experiment, the
    evaluation size cut to CPU scale (the full-size run is marked slow)."""
    overrides = [
        "experiment=cityscapes_ann",
        "dataset.scale=[256,128]",
        "dataset.crop_size=[96,96]",
    ]
    _, run = convert_and_eval("mmseg", mmseg_file[1], tmp_path, (128, 256), overrides, 300)
    assert json.loads((run / "metrics.json").read_text())["mode"] == "whole"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_eval_and_infer_tools_on_a_converted_mmseg_model_at_full_size(
    mmseg_file: tuple[nn.Module, Path], tmp_path: Path
) -> None:
    """The two commands of docs/model_zoo.md: convert, then tools/eval.py with
    the matching experiment and no other override than the data (whole
    1024x2048 inference of the R-50 model); then tools/infer.py on the images."""
    from PIL import Image

    root, _ = convert_and_eval(
        "mmseg", mmseg_file[1], tmp_path, (1024, 2048), ["experiment=cityscapes_ann"], 600
    )
    images = root / "leftImg8bit" / "val" / "ulm"
    proc = run_tool(
        "infer.py",
        [
            "experiment=cityscapes_ann",
            f"input={images}",
            f"checkpoint={tmp_path / 'converted.pth'}",
            f"output_dir={tmp_path / 'infer'}",
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    masks = sorted((tmp_path / "infer" / "predictions" / "masks").glob("*.png"))
    assert len(masks) == 2 and Image.open(masks[0]).size == (2048, 1024)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_eval_tool_on_the_converted_official_model_at_full_size(
    official_file: tuple[nn.Module, Path], tmp_path: Path
) -> None:
    """The authors' R-101 at their protocol (whole 1024x2048, BGR Caffe mean):
    the prediction equals the reference network's on the same image."""
    import numpy as np
    from PIL import Image

    ref, src = official_file
    overrides = ["experiment=cityscapes_ann_official", "evaluator.save_predictions=trainid"]
    root, run = convert_and_eval("official", src, tmp_path, (1024, 2048), overrides, 800)
    image = sorted((root / "leftImg8bit" / "val").rglob("*.png"))[0]
    frame = image.name.removesuffix("_leftImg8bit.png")
    bgr = np.asarray(Image.open(image).convert("RGB"))[..., ::-1].astype(np.float32)
    x = torch.from_numpy(bgr - np.array([102.9801, 115.9465, 122.7717], np.float32))
    with torch.no_grad():
        expected = ref(x.permute(2, 0, 1)[None].contiguous())[1].argmax(1)[0].numpy()
    pred_file = next(f for f in (run / "predictions").rglob("*.png") if f.name.startswith(frame))
    agree = (np.asarray(Image.open(pred_file)) == expected).mean()
    assert agree > 0.999, agree


def test_wrong_inputs_get_one_line(
    mmseg_file: tuple[nn.Module, Path],
    official_file: tuple[nn.Module, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    """Through tools/convert.py's main: exit status 2 and one line on stderr."""
    _, mmseg_src = mmseg_file
    _, official_src = official_file
    cases = {}
    cases["tensor"] = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), cases["tensor"])
    cases["pspnet"] = tmp_path / "pspnet.pth"
    state = torch.load(mmseg_src, weights_only=True)["state_dict"]
    psp = {k: v for k, v in state.items() if k.startswith(("backbone.", "auxiliary_head."))}
    psp["decode_head.psp_modules.0.1.conv.weight"] = torch.zeros(512, 2048, 1, 1)
    psp["decode_head.conv_seg.weight"] = torch.zeros(19, 512, 1, 1)
    torch.save({"meta": {}, "state_dict": psp}, cases["pspnet"])
    cases["unknown"] = tmp_path / "unknown.pth"
    torch.save({"encoder.weight": torch.zeros(2), "head.bias": torch.zeros(2)}, cases["unknown"])
    expect = {
        ("mmseg", "tensor"): "expected a checkpoint dict, found a Tensor",
        ("mmseg", "pspnet"): "not an mmsegmentation ANN checkpoint: 1 of its",
        ("mmseg", "unknown"): "not an mmsegmentation ANN checkpoint: 2 of its 2 tensors",
        ("official", "mmseg"): "this is the mmseg layout",
        ("mmseg", "official"): "this is the official layout",
        ("official", "missing"): "input: no file at",
    }
    paths = {**cases, "mmseg": mmseg_src, "official": official_src, "missing": tmp_path / "no.pth"}
    for (source, name), text in expect.items():
        code = convert_main([source, str(paths[name]), str(tmp_path / "o.pth")])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1, (source, name, lines)
        assert text in lines[0], (source, name, lines[0])
    assert not (tmp_path / "o.pth").exists()
    # The converted model of one layout does not pass for another architecture.
    with pytest.raises(CheckpointError, match="psp_modules"):
        convert("mmseg", cases["pspnet"])
