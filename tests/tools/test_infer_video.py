"""Inference where users need it: video input (same frame count, size and
frame rate out; frames that fail to decode), ``Segmenter.overlay``, batched
``predict`` equal to one image at a time, and the tools rebuilding a
checkpoint's model from its own config (no ``experiment=``) or a registry
name (``checkpoint=zoo:NAME``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from loopback import Server

from ann import Segmenter
from ann.commands import infer as infer_command
from ann.data.base import read_image
from ann.data.video import VideoWriter, video_info
from ann.hub.loading import with_checkpoint_config
from ann.hub.zoo import ENV
from ann.visualization.masks import blend
from helpers import ROOT, checkpoint_overrides, compose_cfg, run_bounded, tool_env


def write_clip(
    path: Path, frames: int = 9, size: tuple[int, int] = (48, 64), fps: float = 12.0
) -> Path:
    """A synthetic clip: a coloured square moving over a grey background."""
    h, w = size
    with VideoWriter(path, fps, w, h) as writer:
        for i in range(frames):
            rgb = np.full((h, w, 3), 90, np.uint8)
            rgb[8:28, 2 + 4 * i : 22 + 4 * i] = (220, 40, 40)
            writer.write(rgb)
    return path


@pytest.fixture(scope="module")
def demo_ckpt(trained_demo: Path) -> Path:
    return trained_demo / "checkpoints" / "best.pth"


def test_video_overlay_keeps_frames_size_and_rate(
    demo_ckpt: Path, shapes_root: Path, tmp_path: Path
) -> None:
    clip = write_clip(tmp_path / "clip.avi")
    source = video_info(clip)
    assert (source.frames, source.width, source.height) == (9, 64, 48)
    cfg = compose_cfg(
        checkpoint_overrides(
            shapes_root,
            demo_ckpt,
            tmp_path / "out",
            f"input={clip}",
            "video_masks=true",
            "batch_size=4",
        ),
        "infer",
    )
    (written,) = infer_command.infer(cfg)
    assert written == tmp_path / "out" / "predictions" / "overlays" / "clip.avi"
    out = video_info(written)
    assert (out.frames, out.width, out.height) == (9, 64, 48)
    assert abs(out.fps - source.fps) < 1e-3
    masks = sorted((tmp_path / "out" / "predictions" / "masks" / "clip").glob("*.png"))
    assert [m.name for m in masks] == [f"{i:06d}.png" for i in range(9)]
    # Each mask is the model's prediction of its frame (batched or not).
    seg = Segmenter.from_checkpoint(demo_ckpt, device="cpu")
    frames = list(infer_command.read_frames(clip, 9))
    np.testing.assert_array_equal(_index_png(masks[4]), seg.predict(frames[4]))


def _index_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(path))


def test_frames_that_fail_to_decode_keep_the_timing(
    demo_ckpt: Path,
    shapes_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=6)
    real = infer_command.read_frames

    def damaged(path: Path, count: int):
        for i, frame in enumerate(real(path, count)):
            yield None if i in (0, 3) else frame  # as OpenCV reports an undecodable frame

    monkeypatch.setattr(infer_command, "read_frames", damaged)
    cfg = compose_cfg(
        checkpoint_overrides(shapes_root, demo_ckpt, tmp_path / "out", f"input={clip}"), "infer"
    )
    (written,) = infer_command.infer(cfg)
    assert video_info(written).frames == 6
    assert "2 frame(s) failed to decode (first: 0)" in (tmp_path / "out" / "infer.log").read_text()


def test_batched_predict_equals_one_at_a_time(demo_ckpt: Path, shapes_root: Path) -> None:
    seg = Segmenter.from_checkpoint(demo_ckpt, device="cpu", flip=True)
    paths = sorted((shapes_root / "images" / "val").glob("*.png"))
    images = [read_image(p) for p in paths] + [read_image(p)[:, ::-1].copy() for p in paths[:2]]
    images.insert(3, images[0][:40, :50].copy())  # another size, in the middle of the list
    assert len({im.shape for im in images}) == 2 and len(images) == 9
    one_by_one = [seg.predict(im) for im in images]
    batched = seg.predict(images, batch_size=8)  # the 8 of one size in one batch
    assert len(batched) == len(images)
    for a, b in zip(batched, one_by_one, strict=True):
        np.testing.assert_array_equal(a, b)


def test_overlay(demo_ckpt: Path, shapes_root: Path) -> None:
    seg = Segmenter.from_checkpoint(demo_ckpt, device="cpu")
    path = sorted((shapes_root / "images" / "val").glob("*.png"))[0]
    rgb = read_image(path)
    mask = seg.predict(rgb)
    out = seg.overlay(path, mask, alpha=0.3)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, blend(rgb, seg.palette[mask], 0.3))
    ignored = mask.copy()
    ignored[:5] = 255
    np.testing.assert_array_equal(seg.overlay(rgb, ignored)[:5], rgb[:5])
    with pytest.raises(ValueError, match="mask of shape"):
        seg.overlay(rgb, mask[:10])


def test_checkpoint_config_replaces_only_what_the_command_line_left(
    demo_ckpt: Path, shapes_root: Path
) -> None:
    from ann.engine.checkpoint import load_checkpoint

    state = load_checkpoint(demo_ckpt)
    cfg = compose_cfg(
        ["evaluator=slide", "dataset.root=/elsewhere", "model.align_corners=true"], "infer"
    )
    given = [
        "checkpoint=x",
        "evaluator=slide",
        "dataset.root=/elsewhere",
        "model.align_corners=true",
    ]
    out = with_checkpoint_config(cfg, state, demo_ckpt, given)
    assert out.model.backbone.depth == state["config"]["model"]["backbone"]["depth"] == 18
    assert out.model.align_corners is True  # the command line's value, on top
    assert out.evaluator.mode == "slide"  # a group the command line chose stays
    assert out.dataset.num_classes == 5 and out.dataset.val.root == "/elsewhere"
    assert with_checkpoint_config(cfg, state, demo_ckpt, [*given, "experiment=demo"]) is cfg
    assert with_checkpoint_config(cfg, state, demo_ckpt, None) is cfg


@pytest.mark.timeout(300)
def test_infer_tool_takes_the_checkpoints_own_config(
    demo_ckpt: Path, shapes_root: Path, tmp_path: Path
) -> None:
    """Issue 25: the checkpoint alone rebuilds its model, no experiment=; a
    wrong experiment= names the one the checkpoint records."""
    image = sorted((shapes_root / "images" / "val").glob("*.png"))[0]
    done = tool(
        "infer.py", f"checkpoint={demo_ckpt}", f"input={image}", f"output_dir={tmp_path / 'a'}"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "a" / "predictions" / "masks" / f"{image.stem}.png").is_file()
    wrong = tool(
        "infer.py",
        "experiment=cityscapes_ann",
        f"checkpoint={demo_ckpt}",
        f"input={image}",
        f"output_dir={tmp_path / 'b'}",
    )
    lines = wrong.stderr.strip().splitlines()
    assert wrong.returncode == 2 and len([ln for ln in lines if ln.startswith("error:")]) == 1
    assert "the checkpoint records experiment demo" in lines[-1]


def tool(script: str, *args: str, env: dict[str, str] | None = None):
    """tools/<script> in a bounded subprocess."""
    return run_bounded([sys.executable, str(ROOT / "tools" / script), *args], 240, env)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_eval_and_video_infer_tools_with_a_zoo_name(
    demo_ckpt: Path, shapes_root: Path, tmp_path: Path
) -> None:
    """checkpoint=zoo:NAME served from 127.0.0.1: the experiment comes from the
    registry entry; the second tool runs with the server stopped, from the cache."""
    server = Server(demo_ckpt.parent)
    registry = tmp_path / "zoo.yaml"
    registry.write_text(
        f"models:\n  team_demo:\n    source: ann\n    url: {server.url}/best.pth\n"
        "    experiment: demo\n    dataset: shapes\n"
    )
    env = {**tool_env(), "TORCH_HOME": str(tmp_path / "torch_home"), ENV: str(registry)}
    data = [f"dataset.root={shapes_root}", "dataset.num_train=16", "dataset.num_val=6"]
    done = tool(
        "eval.py", "checkpoint=zoo:team_demo", *data, f"output_dir={tmp_path / 'e'}", env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["num_images"] == 6
    clip = write_clip(tmp_path / "clip.mp4", frames=5)
    out_dir = tmp_path / "v"
    done = tool(
        "infer.py", "checkpoint=zoo:team_demo", f"input={clip}", f"output_dir={out_dir}", env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = video_info(out_dir / "predictions" / "overlays" / "clip.mp4")
    assert (out.frames, out.width, out.height) == (5, 64, 48) and abs(out.fps - 12.0) < 1e-3


def test_predict_benchmark_reports_equal_masks(capsys: pytest.CaptureFixture) -> None:
    from ann.benchmarks import predict

    argv = "--images 3 --size 32x40 --batch-sizes 3 --repeats 1 --threads 1".split()
    figures = predict.main(argv)
    assert set(figures["results"]) == {"one at a time", "batch 3"}
    assert all(r["equal"] and r["images_per_s"] > 0 for r in figures["results"].values())
    assert "speedup" in capsys.readouterr().out
