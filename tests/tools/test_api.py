"""The Python API (``from ann import Segmenter``): README's snippet runs as
printed, on trained and converted checkpoints, predicts what the evaluator
predicts, keeps every image's size and never downloads anything."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.hub
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from reference import mmseg_ann
from reference.published import model_for, save_mmseg
from reference.weights import randomise

from ann import Segmenter
from ann.commands.convert import convert_file
from ann.data.base import read_image
from ann.engine.checkpoint import load_checkpoint
from ann.errors import CheckpointError
from ann.evaluation.evaluator import Evaluator
from helpers import ROOT

README = ROOT / "README.md"
# A converted Cityscapes model evaluates at 2048×1024; a 64×48 image at that
# scale would take a minute on the CPU, so the tests shrink the eval scale.
SMALL = ["dataset.scale=[128,64]"]


def readme_snippet() -> str:
    """The first ```python block under README's "## Python API" heading."""
    text = README.read_text()
    section = text[text.index("## Python API\n") :]
    section = section[: section.index("\n## ", 1)]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python API section has no python block"
    return match.group(1)


def stage(folder: Path, checkpoint: Path, image: Path) -> Path:
    """A user's folder: the checkpoint at the path the snippet names, and photo.png."""
    dst = folder / "outputs" / "demo" / "checkpoints" / "best.pth"
    dst.parent.mkdir(parents=True)
    shutil.copy(checkpoint, dst)
    shutil.copy(image, folder / "photo.png")
    return dst


def val_image(shapes_root: Path, index: int = 0) -> Path:
    return sorted((shapes_root / "images" / "val").glob("*.png"))[index]


def run_snippet(folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(folder)
    scope: dict = {"__name__": "readme"}
    exec(compile(readme_snippet(), str(README), "exec"), scope)
    return scope


def forbid_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every way the models fetch weights raises; returns the calls' URLs."""
    calls: list[str] = []

    def refuse(url, *args, **kwargs):
        calls.append(str(url))
        raise AssertionError(f"download of {url}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random mmsegmentation ANN R50 (Cityscapes) through tools/convert.py's code."""
    folder = tmp_path_factory.mktemp("converted")
    ref = randomise(mmseg_ann.EncoderDecoder(depth=50, num_classes=19)).eval()
    src = save_mmseg(ref, folder / "ann_r50.pth")
    out = folder / "ann_r50_cs.pth"
    convert_file("mmseg", src, out)
    src.unlink()
    return out


def test_readme_snippet_runs_as_printed(
    trained_demo: Path,
    shapes_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    stage(tmp_path, trained_demo / "checkpoints" / "best.pth", val_image(shapes_root))
    scope = run_snippet(tmp_path, monkeypatch)
    printed = capsys.readouterr().out
    # What the snippet's comments claim.
    assert "[(50, 37), (41, 97)]" in printed
    seg, mask = scope["seg"], scope["mask"]
    assert mask.shape == (64, 64) and mask.dtype == np.int64
    assert seg.classes == ("background", "red", "green", "blue", "yellow")
    assert seg.palette.shape == (5, 3) and seg.palette.dtype == np.uint8
    assert scope["colours"].shape == (64, 64, 3)
    assert mask.min() >= 0 and mask.max() < len(seg.classes)
    assert scope["tta"].evaluator.scales == [0.75, 1.0, 1.25] and scope["tta"].evaluator.flip
    assert scope["untrained"].evaluator.flip


def test_converted_checkpoint_names_its_experiment(
    converted: Path, shapes_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = load_checkpoint(converted)
    assert state["experiment"] == "cityscapes_ann"
    assert state["converted_from"]["experiments"] == ["cityscapes_ann"]
    calls = forbid_downloads(monkeypatch, tmp_path)  # cityscapes_ann names pretrained=v1c
    seg = Segmenter.from_checkpoint(converted, device="cpu", overrides=SMALL)
    assert len(seg.classes) == 19 and seg.classes[0] == "road"
    path = val_image(shapes_root)
    rgb = read_image(path)
    images = [path, rgb[:30, :47], Image.fromarray(rgb[5:, 3:])]
    masks = seg.predict(images)
    assert [m.shape for m in masks] == [(64, 64), (30, 47), (59, 61)]
    assert not calls
    # The same model and pipeline by hand, as tools/eval.py builds them.
    net = model_for("cityscapes_ann", converted)
    tensor, _ = seg.transform(rgb, np.zeros(rgb.shape[:2], np.uint8))
    assert tensor.shape[-2:] == (64, 64)  # resized to the (shrunk) eval scale
    want = Evaluator().predict(net, tensor[None], (64, 64)).argmax(1)[0].numpy()
    np.testing.assert_array_equal(masks[0], want)


def test_checkpoint_without_config_or_experiment(
    trained_demo: Path, tmp_path: Path, shapes_root: Path
) -> None:
    state = load_checkpoint(trained_demo / "checkpoints" / "best.pth")
    bare = tmp_path / "bare.pth"
    torch.save({"model": state["model"]}, bare)
    with pytest.raises(CheckpointError, match="experiment=NAME"):
        Segmenter.from_checkpoint(bare, device="cpu")
    seg = Segmenter.from_checkpoint(bare, device="cpu", experiment="demo")
    full = Segmenter.from_checkpoint(trained_demo / "checkpoints" / "best.pth", device="cpu")
    path = val_image(shapes_root, 1)
    np.testing.assert_array_equal(seg.predict(path), full.predict(path))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"mode": "slide", "crop_size": (64, 48), "stride": (64, 32), "scales": (0.75, 1.0)},
        {"scales": (0.5, 1.25), "flip": True},
    ],
    ids=["whole", "slide_scales", "scales_flip"],
)
def test_predict_equals_the_evaluator(trained_demo: Path, options: dict) -> None:
    """tools/eval.py's pipeline: the dataset's sample and Evaluator.predict's argmax."""
    ckpt = trained_demo / "checkpoints" / "best.pth"
    seg = Segmenter.from_checkpoint(ckpt, device="cpu", **options)
    cfg = OmegaConf.create(load_checkpoint(ckpt)["config"])
    dataset = instantiate(cfg.dataset.val)
    net = model_for_demo(ckpt)
    evaluator = Evaluator(**options)
    for index in (0, 3):
        sample = dataset[index]
        want = evaluator.predict(net, sample["image"][None], tuple(sample["mask"].shape))
        path = Path(cfg.dataset.root) / "images" / "val" / f"{sample['name']}.png"
        np.testing.assert_array_equal(seg.predict(path), want.argmax(1)[0].numpy())


def model_for_demo(ckpt: Path) -> torch.nn.Module:
    from ann.engine.checkpoint import load_model_weights
    from ann.models.pretrained import without_pretrained

    state = load_checkpoint(ckpt)
    net = instantiate(without_pretrained(OmegaConf.create(state["config"]).model))
    load_model_weights(net, state, ckpt)
    return net.eval()


def test_never_downloads(
    trained_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shapes_root: Path
) -> None:
    state = load_checkpoint(trained_demo / "checkpoints" / "best.pth")
    state["config"]["model"]["backbone"]["pretrained"] = "torchvision"
    ckpt = tmp_path / "wants_imagenet.pth"
    torch.save(state, ckpt)
    calls = forbid_downloads(monkeypatch, tmp_path)
    # The patches do intercept: building that backbone as training would (at
    # ImageNet's width: the demo's narrow one refuses ImageNet weights), downloads.
    backbone = OmegaConf.create(state["config"]).model.backbone
    backbone.base_channels = 64
    backbone.out_channels = None  # the demo's narrow widths: not checked
    with pytest.raises(Exception, match="download"):
        instantiate(backbone)
    assert calls
    calls.clear()
    seg = Segmenter.from_checkpoint(ckpt, device="cpu")
    seg.predict(val_image(shapes_root))
    Segmenter.from_config(
        experiment="demo", overrides=["model=ann_r18", "model.backbone.pretrained=torchvision"]
    )
    Segmenter.from_config(experiment="cityscapes_ann")  # pretrained=v1c, ResNet-50
    assert not calls


def test_from_config(shapes_root: Path) -> None:
    seg = Segmenter.from_config(experiment="demo", device="cpu", scales=(1.0, 0.5))
    assert seg.config.name == "demo" and seg.evaluator.scales == [1.0, 0.5]
    assert not seg.model.training
    mask = seg.predict(val_image(shapes_root))
    assert mask.shape == (64, 64) and mask.dtype == np.int64
    assert len(seg.classes) == seg.num_classes == 5


def test_sizes_preserved_for_a_list(trained_demo: Path) -> None:
    seg = Segmenter.from_checkpoint(trained_demo / "checkpoints" / "best.pth", device="cpu")
    rng = np.random.default_rng(0)
    sizes = [(37, 53), (64, 64), (101, 17), (1, 9)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    masks = seg.predict(images)
    assert isinstance(masks, list) and [m.shape for m in masks] == sizes
    assert all(m.dtype == np.int64 for m in masks)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        seg.predict(images[0].astype(np.float32))
    with pytest.raises(TypeError):
        seg.predict(42)


def test_import_ann_is_light_and_configs_found_from_anywhere(tmp_path: Path) -> None:
    """``import ann.errors`` loads neither torch nor hydra; ``config_dir()``
    and ``from ann import Segmenter`` work from a folder outside the repository."""
    code = (
        "import sys, ann.errors\n"
        "assert 'torch' not in sys.modules and 'hydra' not in sys.modules\n"
        "from ann.config.compose import compose, config_dir\n"
        "import ann\n"
        "print(config_dir())\n"
        "print(ann.__file__)\n"
        "assert compose('eval', ['experiment=demo']).name == 'demo'\n"
        "from ann import Segmenter\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    found, package = proc.stdout.split()
    # The configs beside whichever checkout the interpreter imports ann from
    # (a shared venv may point its editable install at another clone).
    assert Path(found).resolve() == (Path(package).parents[1] / "configs").resolve()


def test_wheel_carries_the_configs(tmp_path: Path) -> None:
    """A wheel install (no checkout beside it) finds its configs in the package."""
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "ann", src / "ann", symlinks=True, ignore=skip)
    shutil.copytree(ROOT / "configs", src / "configs", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    proc = subprocess.run(
        [*pip, "--no-index", "-w", str(tmp_path / "dist"), str(src)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    site = tmp_path / "site"
    shutil.unpack_archive(next((tmp_path / "dist").glob("ann-*.whl")), site, "zip")
    assert not (site / "ann" / "config_tree").is_symlink()
    names = {p.relative_to(ROOT / "configs") for p in (ROOT / "configs").rglob("*.yaml")}
    assert names == {p.relative_to(site / "ann" / "config_tree") for p in site.rglob("*.yaml")}
    code = (
        "import ann.config.compose as c\n"
        "print(c.__file__, c.config_dir(), sep='\\n')\n"
        "assert c.compose('train', ['experiment=demo']).model.num_classes == 5\n"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    module, configs = proc.stdout.split()
    assert Path(module).is_relative_to(site) and Path(configs) == site / "ann" / "config_tree"
