"""ImageNet V1c weights by short name: hub cache, offline message, and the
paths that restore a checkpoint never fetching them."""

from __future__ import annotations

import logging
import sys
import urllib.error
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import torch.hub

from ann.errors import ConfigError
from ann.models import pretrained
from ann.models.backbones import ResNetBackbone
from helpers import ROOT, compose_cfg, run_bounded, tiny_train_overrides, tool_env
from trees import make_cityscapes

V1C_50 = "resnet50_v1c-2cccc1ad.pth"


def v1c_file(depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict in the layout of mmsegmentation's resnetXX_v1c file:
    stem.0/1/3/4/6/7, layerN.i.{conv,bn}K, downsample.0/1 and the ImageNet fc."""
    torch.manual_seed(seed)
    state = ResNetBackbone(depth, stem="deep").state_dict()
    for k, v in state.items():
        if v.is_floating_point():
            v.copy_(torch.rand_like(v) * 0.1 + (1.0 if k.endswith("running_var") else 0.0))
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 2048) * 0.01, torch.zeros(1000)
    return state


class Hub(NamedTuple):
    dir: Path  # $TORCH_HOME/hub/checkpoints
    calls: list[str]  # URLs a download was attempted for


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hub:
    """An empty torch hub cache and no network: any download attempt fails."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def offline(url: str, dst: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return Hub(tmp_path / "torch" / "hub" / "checkpoints", calls)


def test_offline_message_names_url_cache_path_and_null(hub: Hub) -> None:
    with pytest.raises(ConfigError) as info:
        ResNetBackbone(50, pretrained="v1c")
    msg = str(info.value)
    assert "\n" not in msg
    assert f"https://download.openmmlab.com/pretrain/third_party/{V1C_50}" in msg
    assert f"place a copy at {hub.dir / V1C_50}" in msg
    assert "model.backbone.pretrained=null" in msg
    assert pretrained.cache_path(pretrained.V1C_URLS[101]) == hub.dir / "resnet101_v1c-e67eebb6.pth"


def test_v1c_file_in_the_cache_loads_without_network(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    hub.dir.mkdir(parents=True)
    state = v1c_file(50)
    torch.save(state, hub.dir / V1C_50)
    with caplog.at_level(logging.INFO):
        net = ResNetBackbone(50, stem="deep", pretrained="v1c")
    assert hub.calls == []
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, state[k], msg=k)
    assert f"ImageNet weights from v1c ({hub.dir / V1C_50}): {len(net.state_dict())} tensors" in (
        caplog.text
    )
    assert (
        "missing" not in caplog.text and "skipped" not in caplog.text
    )  # the ImageNet fc is dropped
    # mmsegmentation's spelling is the same file.
    net = ResNetBackbone(50, pretrained="open-mmlab://resnet50_v1c")
    torch.testing.assert_close(net.layer3[4].conv2.weight, state["layer3.4.conv2.weight"])


def test_v1c_download_goes_to_the_hub_cache_with_its_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetch asks torch.hub for the file with its SHA-256 prefix, once."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def download(url: str, dst: str, hash_prefix: str | None = None, **kwargs: object) -> None:
        calls.append((url, Path(dst).name, hash_prefix))
        torch.save(v1c_file(50), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    ResNetBackbone(50, pretrained="v1c")
    ResNetBackbone(50, pretrained="v1c")
    assert calls == [(pretrained.V1C_URLS[50], V1C_50, "2cccc1ad")]


def test_v1c_for_other_depths_and_stems_is_one_line(hub: Hub) -> None:
    with pytest.raises(ConfigError, match=r"published for depth \[50, 101\], not 18"):
        ResNetBackbone(18, pretrained="v1c")
    with pytest.raises(ConfigError, match="is for ResNet-50, but model.backbone.depth=101"):
        ResNetBackbone(101, pretrained="open-mmlab://resnet50_v1c")
    with pytest.raises(ConfigError, match="stem=deep"):
        ResNetBackbone(50, stem="standard", pretrained="v1c")


def test_reference_recipes_start_from_v1c() -> None:
    for experiment in (
        "cityscapes_ann",
        "cityscapes_ann_r101_769",
        "ade20k_ann",
        "ade20k_ann_r101",
        "voc_aug_ann",
        "voc_aug_ann_r101",
    ):
        cfg = compose_cfg([f"experiment={experiment}"])
        assert cfg.model.backbone.pretrained == "v1c", experiment
        assert cfg.model.backbone.depth in pretrained.V1C_URLS


def _cityscapes(tmp_path: Path, out: Path) -> list[str]:
    """experiment=cityscapes_ann (R-50, pretrained=v1c) on a tiny tree, sizes cut to CPU."""
    root = tmp_path / "cs"
    if not root.is_dir():
        make_cityscapes(root, {"train": {"aachen": 2}, "val": {"ulm": 1}}, (64, 128))
    return [
        "experiment=cityscapes_ann",
        f"dataset.root={root}",
        f"output_dir={out}",
        "dataset.crop_size=[64,64]",
        "dataset.scale=[128,64]",
        "evaluator.num_workers=0",
    ]


TRAIN = ["trainer.batch_size=2", "trainer.num_workers=0", "trainer.num_vis=1"]


def test_restoring_paths_never_fetch(hub: Hub, tmp_path: Path) -> None:
    """Train one iteration from the cached V1c file; then, with the cache
    emptied (and no network), resume, fine-tune with load_from and evaluate
    with the recipe's defaults: none of them fetches ImageNet weights."""
    from ann.commands.eval import evaluate
    from ann.commands.train import train

    hub.dir.mkdir(parents=True)
    torch.save(v1c_file(50), hub.dir / V1C_50)
    run = tmp_path / "run"
    common = [*_cityscapes(tmp_path, run), *TRAIN, "trainer.val_interval=100"]
    train(compose_cfg([*common, "trainer.max_iters=1"]))
    assert "ImageNet weights from v1c" in (run / "train.log").read_text()
    (hub.dir / V1C_50).unlink()

    train(compose_cfg([*common, "trainer.max_iters=2"]))  # resumes at 1
    assert "resumed from" in (run / "train.log").read_text()
    ckpt = run / "checkpoints" / "last.pth"
    tuned = tmp_path / "tuned"
    train(
        compose_cfg(
            [
                *_cityscapes(tmp_path, tuned),
                *TRAIN,
                "trainer.max_iters=1",
                f"trainer.load_from={ckpt}",
            ]
        )
    )
    assert "loaded weights from" in (tuned / "train.log").read_text()
    eval_cfg = compose_cfg(
        [*_cityscapes(tmp_path, tmp_path / "eval"), f"checkpoint={ckpt}"], "eval"
    )
    assert evaluate(eval_cfg)["iteration"] == 2
    assert hub.calls == []


def test_from_scratch_is_logged(tmp_path: Path, shapes_root: Path) -> None:
    from ann.commands.train import train

    out = tmp_path / "run"
    train(compose_cfg(tiny_train_overrides(shapes_root, out, "trainer.max_iters=1")))
    log = (out / "train.log").read_text()
    assert "model.backbone.pretrained=null: the backbone trains from scratch" in log


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_train_tool_offline_stops_at_once_then_trains_from_the_placed_file(
    tmp_path: Path,
) -> None:
    """The issue's command on an offline machine: one line naming the URL and
    the cache path; with the V1c file placed there, training starts from it."""
    torch_home = tmp_path / "torch"
    # A proxy on a closed port: urllib fails at once, as with no network at all.
    env = {
        **tool_env(),
        "TORCH_HOME": str(torch_home),
        "https_proxy": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "no_proxy": "",
        "NO_PROXY": "",
    }
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "tools/train.py"), *_cityscapes(tmp_path, out), *TRAIN]
    proc = run_bounded([*cmd, "trainer.max_iters=1"], 120, env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    cached = torch_home / "hub" / "checkpoints" / V1C_50
    assert len(lines) == 1 and lines[0].startswith("error: model.backbone.pretrained"), lines
    assert pretrained.V1C_URLS[50] in lines[0] and f"place a copy at {cached}," in lines[0]
    assert not (out / "checkpoints").exists()

    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": v1c_file(50)}, cached)
    proc = run_bounded([*cmd, "trainer.max_iters=1"], 240, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"ImageNet weights from v1c ({cached})" in (out / "train.log").read_text()
    assert (out / "checkpoints" / "last.pth").is_file()
