"""Cityscapes, ADE20K, VOC and VOC-aug on tiny trees in their official layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import prepare_cityscapes
import prepare_voc_aug
from ann.data.ade20k import ADE20K_CLASSES, ADE20K_PALETTE, ADE20KDataset
from ann.data.cityscapes import (
    CITYSCAPES_CLASSES,
    CityscapesDataset,
    label_id_to_train_id_lut,
    train_id_to_label_id_lut,
)
from ann.data.transforms import EvalTransform
from ann.data.voc import VOC_CLASSES, VOCDataset
from trees import make_ade, make_cityscapes, make_sbd, make_voc, polygon_annotation


def _expected_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """trainIds straight from cityscapesscripts' table (255 for void and ignoreInEval)."""
    from cityscapesscripts.helpers.labels import id2label

    out = np.full(label_ids.shape, 255, np.uint8)
    for value in np.unique(label_ids):
        lb = id2label[int(value)]
        if 0 <= lb.trainId < 255 and not lb.ignoreInEval:
            out[label_ids == value] = lb.trainId
    return out


def test_cityscapes_lut_matches_cityscapesscripts() -> None:
    from cityscapesscripts.helpers.labels import id2label, trainId2label

    lut = label_id_to_train_id_lut()
    for label_id in range(256):
        lb = id2label.get(label_id)
        want = lb.trainId if lb is not None and 0 <= lb.trainId < 255 else 255
        assert lut[label_id] == want, (label_id, lb)
    back = train_id_to_label_id_lut()
    assert [back[t] for t in range(19)] == [trainId2label[t].id for t in range(19)]
    assert CITYSCAPES_CLASSES == tuple(trainId2label[t].name for t in range(19))


def test_cityscapes_split_lengths_and_mapping(tmp_path: Path) -> None:
    root = make_cityscapes(
        tmp_path / "cs",
        {"train": {"aachen": 3, "bochum": 2}, "val": {"frankfurt": 2}, "test": {"berlin": 1}},
    )
    train, val = CityscapesDataset(root, "train"), CityscapesDataset(root, "val")
    test = CityscapesDataset(root, "test")
    assert (len(train), len(val), len(test)) == (5, 2, 1) and train.num_classes == 19
    assert train.sample_name(0) == "aachen_000000_000019"
    item = train[1]
    stored = np.asarray(Image.open(train.samples[1][1]))
    assert item["mask"].dtype.is_floating_point is False
    np.testing.assert_array_equal(item["mask"].numpy(), _expected_train_ids(stored))
    assert {0, 255} <= set(item["mask"].unique().tolist())  # void ids become 255
    assert (test[0]["mask"] == 255).all()  # no public test labels


def test_cityscapes_mapping_matches_json2labelimg(tmp_path: Path) -> None:
    """labelIds rendered by cityscapesscripts and mapped here equal its trainIds rendering."""
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2labelImg import createLabelImage

    annotation = Annotation()
    annotation.fromJsonFile(str(polygon_annotation(tmp_path / "a.json", 64, 128)))
    label_ids = np.asarray(createLabelImage(annotation, "ids"))
    train_ids = np.asarray(createLabelImage(annotation, "trainIds"))
    np.testing.assert_array_equal(label_id_to_train_id_lut()[label_ids], train_ids)


def test_prepare_cityscapes_writes_train_ids(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs")
    assert prepare_cityscapes.main([str(root), "--nproc", "1"]) == 0
    files = sorted((root / "gtFine").rglob("*_gtFine_labelTrainIds.png"))
    assert len(files) == 7
    for f in files:
        stored = np.asarray(Image.open(str(f).replace("labelTrainIds", "labelIds")))
        np.testing.assert_array_equal(np.asarray(Image.open(f)), _expected_train_ids(stored))
    ds = CityscapesDataset(root, "train")
    assert ds.mapped and ds.samples[0][1].name.endswith("_labelTrainIds.png")
    np.testing.assert_array_equal(ds[0]["mask"].numpy(), np.asarray(Image.open(files[0])))


def test_ade20k_reduce_zero_label(tmp_path: Path) -> None:
    ade = make_ade(tmp_path / "ade")
    train = ADE20KDataset(ade, "training")
    val = ADE20KDataset(tmp_path / "ade", "val")  # the parent folder and "val" work too
    assert (len(train), len(val)) == (3, 2) and train.num_classes == 150
    assert len(ADE20K_CLASSES) == len(ADE20K_PALETTE) == 150
    for i in range(len(train)):
        stored = np.asarray(Image.open(train.samples[i][1])).astype(np.int64)
        mask = train[i]["mask"].numpy()
        assert mask.shape == stored.shape  # odd sizes kept
        np.testing.assert_array_equal(mask[stored == 0], 255)
        np.testing.assert_array_equal(mask[stored > 0], stored[stored > 0] - 1)
        assert mask.max() == 255 and mask[mask != 255].max() == 149
    plain = ADE20KDataset(ade, "training", reduce_zero_label=False)
    with pytest.raises(Exception, match="outside \\[0, 150\\)"):
        plain[0]  # 150 is no class without the reduction


def test_voc_palette_labels_and_borders(tmp_path: Path) -> None:
    voc = make_voc(tmp_path, ["2007_000032", "2007_000039"], ["2007_000033"], extra=["2008_1"])
    train, val = VOCDataset(tmp_path, "train"), VOCDataset(voc, "val")
    assert (len(train), len(val)) == (2, 1) and train.num_classes == len(VOC_CLASSES) == 21
    item = train[1]
    mask = item["mask"].numpy()
    assert set(np.unique(mask)) == {0, 2, 255}  # indices, not palette colours
    assert (mask[9, 14:41] == 255).all()  # the void border stays ignore
    assert item["image"].shape[1:] == mask.shape == (47, 64)


def test_voc_aug_prepare_and_load(tmp_path: Path) -> None:
    voc_train, voc_val = ["2007_000032", "2007_000039"], ["2007_000033"]
    voc = make_voc(tmp_path, voc_train, voc_val)
    sbd = make_sbd(tmp_path, voc, ["2008_000002", "2007_000032"], ["2008_000003", "2007_000033"])
    assert prepare_voc_aug.main([str(voc), str(sbd), "--nproc", "1"]) == 0
    names = (voc / "ImageSets/Segmentation/trainaug.txt").read_text().split()
    # SBD train + val + VOC train, minus VOC val.
    assert names == ["2007_000032", "2007_000039", "2008_000002", "2008_000003"]
    aug = voc / "SegmentationClassAug"
    assert Image.open(aug / "2008_000002.png").mode == "L"
    # VOC's own annotation wins where both exist (it keeps the 255 borders).
    np.testing.assert_array_equal(
        np.asarray(Image.open(aug / "2007_000032.png")),
        np.asarray(Image.open(voc / "SegmentationClass/2007_000032.png")),
    )
    from scipy.io import loadmat

    mat = loadmat(tmp_path / "benchmark_RELEASE/dataset/cls/2008_000003.mat")
    np.testing.assert_array_equal(
        np.asarray(Image.open(aug / "2008_000003.png")), mat["GTcls"][0]["Segmentation"][0]
    )
    assert (voc / "JPEGImages/2008_000003.jpg").is_file()  # copied from SBD's img/
    ds = VOCDataset(voc, "trainaug", label_dir="SegmentationClassAug", transforms=EvalTransform())
    assert len(ds) == 4 and ds[2]["mask"].max() <= 20
