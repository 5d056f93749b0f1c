"""PASCAL Context: the label preparation from the Detail JSON, the loaders
(59 and 60 classes) and the recipes, on tiny trees in the official layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import prepare_pascal_context
from ann.data import rle
from ann.data.pascal_context import (
    CONTEXT60_CLASSES,
    CONTEXT60_PALETTE,
    CONTEXT_CLASSES,
    CONTEXT_PALETTE,
    PascalContext60Dataset,
    PascalContextDataset,
    label_id_lut,
)
from ann.errors import DataError
from helpers import compose_cfg, run_tool
from trees import CONTEXT_59_NAMES, CONTEXT_LABELS, make_pascal_context, rle_encode

TRAIN, VAL = ["2008_000002", "2008_000003", "2010_000005"], ["2008_000008", "2009_000011"]


def _expected(painted_ids: np.ndarray) -> np.ndarray:
    """Stored label by name: class k (1..59) is the k-th benchmark name in
    alphabetical order, every other label background."""
    ranked = sorted(CONTEXT_59_NAMES)
    out = np.zeros(painted_ids.shape, np.uint8)
    for label_id in np.unique(painted_ids):
        name = CONTEXT_LABELS.get(int(label_id))
        if name in ranked:
            out[painted_ids == label_id] = ranked.index(name) + 1
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A tiny tree, prepared in process: (dataset root, {name: painted ids})."""
    root = tmp_path_factory.mktemp("context")
    _, json_path, painted = make_pascal_context(root, TRAIN, VAL)
    assert (
        prepare_pascal_context.main([str(root / "VOCdevkit"), str(json_path), "--nproc", "1"]) == 0
    )
    return root, painted


def test_mapping_matches_the_label_names() -> None:
    assert len(set(CONTEXT_59_NAMES)) == 59 and CONTEXT_CLASSES == tuple(sorted(CONTEXT_59_NAMES))
    assert CONTEXT60_CLASSES == ("background", *CONTEXT_CLASSES)
    assert len(CONTEXT_PALETTE) == 59 and len(CONTEXT60_PALETTE) == 60
    lut = label_id_lut()
    expected = _expected(np.array(sorted(CONTEXT_LABELS)))
    assert lut[sorted(CONTEXT_LABELS)].tolist() == expected.tolist()
    assert sorted(set(lut.tolist())) == list(range(60))  # every class reached by one id
    assert int(np.count_nonzero(lut)) == 59  # the other 400 of the 459 labels: background


def test_rle_decode_round_trip_and_errors() -> None:
    rng = np.random.default_rng(0)
    for h, w, p in [(1, 1, 1.0), (7, 5, 0.0), (13, 29, 0.5), (40, 33, 0.97), (375, 500, 0.3)]:
        mask = rng.random((h, w)) < p
        np.testing.assert_array_equal(rle.decode(rle_encode(mask)), mask)
    uncompressed = {"size": [2, 3], "counts": [1, 2, 3]}  # column-major, zeros first
    np.testing.assert_array_equal(rle.decode(uncompressed), [[0, 1, 0], [1, 0, 0]])
    for bad in [
        {"size": [2, 3], "counts": [1, 2]},
        {"size": [2, 3], "counts": "0Z"},
        {"size": [2, 3], "counts": "1o"},
        [[0.0, 1.0, 2.0, 2.0]],
        {"counts": "3"},
    ]:
        with pytest.raises(rle.RLEError):
            rle.decode(bad)


def test_prepare_writes_the_mapped_labels_and_splits(prepared) -> None:
    root, painted = prepared
    voc = root / "VOCdevkit" / "VOC2010"
    sets = voc / "ImageSets" / "SegmentationContext"
    assert sets.joinpath("train.txt").read_text().split() == sorted(TRAIN)
    assert sets.joinpath("val.txt").read_text().split() == sorted(VAL)
    seen = set()
    for name, ids in painted.items():
        label = Image.open(voc / "SegmentationClassContext" / f"{name}.png")
        assert label.mode == "L"
        np.testing.assert_array_equal(np.asarray(label), _expected(ids))
        seen |= set(np.unique(np.asarray(label)).tolist())
    assert 0 in seen and len(seen) > 10 and max(seen) <= 59
    assert not list(voc.rglob("*.tmp"))


def test_loaders_reduce_zero_label_and_60_classes(prepared) -> None:
    root, painted = prepared
    train = PascalContextDataset(root, "train")  # the folder above VOCdevkit works
    val60 = PascalContext60Dataset(root / "VOCdevkit" / "VOC2010", "val")
    assert (len(train), len(val60), train.num_classes, val60.num_classes) == (3, 2, 59, 60)
    for i, name in enumerate(sorted(TRAIN)):
        stored = _expected(painted[name]).astype(np.int64)
        mask = train[i]["mask"].numpy()
        np.testing.assert_array_equal(mask, np.where(stored == 0, 255, stored - 1))
    np.testing.assert_array_equal(val60[0]["mask"].numpy(), _expected(painted[sorted(VAL)[0]]))


def test_loader_names_the_missing_preparation(tmp_path: Path) -> None:
    make_pascal_context(tmp_path, TRAIN[:1], VAL[:1])
    with pytest.raises(DataError, match="SegmentationClassContext.*prepare_pascal_context.py"):
        PascalContextDataset(tmp_path, "train")


BAD_INPUTS = {
    "no VOC2010": ("voc", "dataset.root: {root}/nowhere does not exist"),
    "no json": ("json-missing", "{root}/missing.json does not exist"),
    "truncated json": ("json-truncated", "{root}/trainval_merged.json: not a readable JSON file"),
    "coco json": (
        "json-keys",
        "{root}/trainval_merged.json: no 'annos_segmentation', 'categories' key",
    ),
    "image missing": ("jpeg", "1 image(s) listed in {root}/trainval_merged.json are missing from"),
    "polygon": ("polygon", "2008_000002.jpg: malformed segmentation in the annotations"),
    "unknown category": ("category", "annos_segmentation[0]: category_id 999 is not one of"),
    "wrong size": ("size", "2008_000008.jpg: size 63x45 differs from the annotations' 63x46"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, capsys) -> None:
    kind, message = BAD_INPUTS[case]
    voc, json_path, _ = make_pascal_context(tmp_path, TRAIN[:1], VAL[:1])
    data = json.loads(json_path.read_text())
    args = [str(tmp_path / "VOCdevkit"), str(json_path), "--nproc", "1"]
    if kind == "voc":
        args[0] = str(tmp_path / "nowhere")
    elif kind == "json-missing":
        args[1] = str(tmp_path / "missing.json")
    elif kind == "json-truncated":
        json_path.write_text(json_path.read_text()[:100])
    elif kind == "json-keys":
        json_path.write_text(json.dumps({"images": [], "annotations": []}))
    elif kind == "jpeg":
        (voc / "JPEGImages" / f"{VAL[0]}.jpg").unlink()
    elif kind == "size":
        data["images"][1]["height"] += 1
        json_path.write_text(json.dumps(data))
    else:
        first = data["annos_segmentation"][0]
        if kind == "polygon":
            first["segmentation"] = [[0.0, 0.0, 10.0, 0.0, 10.0, 10.0]]
        else:
            first["category_id"] = 999
        json_path.write_text(json.dumps(data))
    assert prepare_pascal_context.main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert message.format(root=tmp_path) in errors[0], err
    if kind not in ("polygon", "size"):  # checked before the progress bar and any writing
        assert err.strip() == errors[0]
        assert not (voc / "SegmentationClassContext").exists()


@pytest.mark.integration
def test_recipe_trains_and_evaluates(prepared, tmp_path: Path) -> None:
    """tools/train.py experiment=pascal_context_ann (2 iterations of the small
    model) -> tools/eval.py with the recipe's 14-pass multi-scale + flip test."""
    root, _ = prepared
    common = [
        "experiment=pascal_context_ann",
        f"dataset.root={root}",
        "model=ann_r18",
        # the recipe's head part has R-50/101 channels; the small model's own
        "model/decode_head=ann_r18",
        "dataset.crop_size=[32,32]",
        "dataset.scale=[96,64]",
        "evaluator.num_workers=0",
    ]
    run = tmp_path / "run"
    r = run_tool(
        "train.py",
        [
            *common,
            f"output_dir={run}",
            "trainer.max_iters=2",
            "trainer.batch_size=2",
            "trainer.num_workers=0",
            "trainer.num_vis=1",
            "model.loss.min_kept=100",
            "evaluator=whole",
        ],
    )
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["iteration"] == 2 and list(metrics["per_class"]) == list(CONTEXT_CLASSES)

    out = tmp_path / "eval"
    ckpt = run / "checkpoints" / "best.pth"
    r = run_tool("eval.py", [*common, f"checkpoint={ckpt}", f"output_dir={out}"])
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 2 and metrics["flip"] is True
    assert metrics["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]


@pytest.mark.parametrize(
    ("experiment", "classes"),
    [
        ("pascal_context_ann_r50_40k", CONTEXT_CLASSES),
        ("pascal_context_60_ann_r50_80k", CONTEXT60_CLASSES),
    ],
)
def test_r50_recipes_load_their_classes(prepared, experiment: str, classes: tuple) -> None:
    """The mmsegmentation-style recipes build a model and both splits of their class count."""
    from hydra.utils import instantiate

    root, _ = prepared
    cfg = compose_cfg([f"experiment={experiment}", f"dataset.root={root}"])
    assert cfg.model.num_classes == len(classes) and cfg.evaluator.mode == "slide"
    train, val = instantiate(cfg.dataset.train), instantiate(cfg.dataset.val)
    assert train.classes == val.classes == classes and (len(train), len(val)) == (3, 2)
    assert tuple(train[0]["mask"].shape) == (480, 480)  # the recipe's crop, padded
    values = set(val[0]["mask"].unique().tolist()) - {255}
    assert values and max(values) < len(classes)
