"""tools/infer.py: images, folders and globs; masks agree with the evaluation pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from ann.commands.infer import collect_inputs, infer
from ann.errors import DataError
from helpers import checkpoint_overrides, compose_cfg

# slide (2 overlapping windows at 1.0, a padded one at 0.75) and two scales
TTA = ["evaluator.mode=slide", "evaluator.crop_size=[64,48]", "evaluator.stride=[64,32]"]
TTA += ["evaluator.scales=[0.75,1.0]"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained, seeded) small model's checkpoint for the shapes classes."""
    torch.manual_seed(0)
    model = instantiate(compose_cfg(["experiment=demo"]).model)
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return path


def overrides(shapes_root: Path, ckpt: Path, out: Path, *extra: str) -> list[str]:
    return checkpoint_overrides(shapes_root, ckpt, out, "evaluator.num_workers=0", *extra)


def test_collect_inputs(tmp_path: Path) -> None:
    for rel in ("a.png", "sub/b.jpg", "sub/deeper/c.png", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [n for _, n in collect_inputs(str(tmp_path))] == ["a", "sub/b", "sub/deeper/c"]
    assert collect_inputs(str(tmp_path / "a.png")) == [(tmp_path / "a.png", "a")]
    names = [n for _, n in collect_inputs(str(tmp_path / "sub" / "**" / "*.png"))]
    assert names == ["c"]
    names = [n for _, n in collect_inputs(str(tmp_path / "**" / "*.*g"))]
    assert names == ["a", "sub/b", "sub/deeper/c"]
    with pytest.raises(DataError, match="input="):
        collect_inputs(str(tmp_path / "*.bmp"))


def test_infer_glob_matches_eval_predictions(
    shapes_root: Path, checkpoint: Path, tmp_path: Path
) -> None:
    images = shapes_root / "images" / "val"
    cfg = compose_cfg(
        overrides(
            shapes_root,
            checkpoint,
            tmp_path / "infer",
            f"input='{images}/0000[02].png'",
            "progress=false",
            *TTA,
        ),
        "infer",
    )
    masks = infer(cfg)
    assert [m.name for m in masks] == ["00000.png", "00002.png"]
    # the evaluation pipeline (dataset transform, Evaluator.predict) on the same images
    ev_cfg = compose_cfg(overrides(shapes_root, checkpoint, tmp_path / "eval", *TTA), "eval")
    dataset = instantiate(ev_cfg.dataset.val)
    evaluator = instantiate(ev_cfg.evaluator)
    model = instantiate(ev_cfg.model)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    model.eval()
    refs = {}
    for i in (0, 2):
        sample = dataset[i]
        scores = evaluator.predict(model, sample["image"][None], tuple(sample["mask"].shape))
        refs[f"{sample['name']}.png"] = scores.argmax(1)[0].numpy()
    for mask in masks:
        img = Image.open(mask)
        assert img.mode == "P" and img.size == Image.open(images / mask.name).size
        assert np.array_equal(np.asarray(img), refs[mask.name]), mask.name
        overlay = Image.open(tmp_path / "infer" / "predictions" / "overlays" / mask.name)
        assert overlay.size == (2 * img.size[0], img.size[1])  # image | overlay
    assert (tmp_path / "infer" / "infer.log").is_file()
    assert (tmp_path / "infer" / "config.yaml").is_file()


def test_infer_single_image_any_size(shapes_root: Path, checkpoint: Path, tmp_path: Path) -> None:
    """An image of another size than the training data comes back at its own size."""
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "odd.jpg")
    cfg = compose_cfg(
        overrides(
            shapes_root,
            checkpoint,
            tmp_path / "out",
            f"input={tmp_path / 'odd.jpg'}",
            "progress=false",
        ),
        "infer",
    )
    (mask,) = infer(cfg)
    assert mask == tmp_path / "out" / "predictions" / "masks" / "odd.png"
    assert Image.open(mask).size == (53, 37)
