"""Bad dataset input: one clear line naming the file or folder, never a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from ann.data.ade20k import ADE20KDataset
from ann.data.cityscapes import CityscapesDataset
from ann.data.folder import FolderDataset
from ann.data.voc import VOCDataset
from ann.errors import DataError
from helpers import ROOT
from trees import make_ade, make_cityscapes, make_voc


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.fixture
def cityscapes(tmp_path: Path) -> Path:
    return make_cityscapes(tmp_path / "cs", size=(32, 64))


def test_missing_root_names_path_and_layout(tmp_path: Path) -> None:
    cases = [
        (CityscapesDataset, "leftImg8bit/train/CITY/CITY_SEQ_FRAME_leftImg8bit.png"),
        (ADE20KDataset, "ADEChallengeData2016/images/{training,validation}/NAME.jpg"),
        (VOCDataset, "VOCdevkit/VOC2012/JPEGImages/NAME.jpg"),
    ]
    for cls, layout in cases:
        with pytest.raises(DataError) as exc:
            cls(tmp_path / "nowhere", "train")
        msg = _one_line(exc)
        assert f"{tmp_path / 'nowhere'} does not exist" in msg and layout in msg, msg


def test_missing_split_folder(cityscapes: Path, tmp_path: Path) -> None:
    shutil.rmtree(cityscapes / "gtFine" / "val")
    with pytest.raises(DataError) as exc:
        CityscapesDataset(cityscapes, "val")
    assert f"{cityscapes / 'gtFine' / 'val'} does not exist" in _one_line(exc)
    ade = make_ade(tmp_path / "ade")
    shutil.rmtree(ade / "annotations" / "validation")
    with pytest.raises(DataError, match="annotations/validation does not exist"):
        ADE20KDataset(ade, "validation")
    voc = make_voc(tmp_path, ["a"], ["b"])
    with pytest.raises(DataError, match="no split file .*trainaug.txt"):
        VOCDataset(voc, "trainaug")


def test_images_without_labels(cityscapes: Path) -> None:
    labels = sorted((cityscapes / "gtFine/train").rglob("*_labelIds.png"))
    for p in labels:
        p.unlink()
    for i in range(2):  # 7 unpaired images in all: the message shows 5
        img = cityscapes / f"leftImg8bit/train/aachen/aachen_00010{i}_000019_leftImg8bit.png"
        shutil.copy(next(cityscapes.rglob("*_leftImg8bit.png")), img)
    with pytest.raises(DataError) as exc:
        CityscapesDataset(cityscapes, "train")
    msg = _one_line(exc)
    assert msg.startswith("7 image(s) in ") and "have no label in" in msg
    assert msg.count("_000019") == 5


def test_labels_without_images(tmp_path: Path) -> None:
    ade = make_ade(tmp_path)
    (ade / "images/training/ADE_train_00000002.jpg").unlink()
    with pytest.raises(DataError) as exc:
        ADE20KDataset(ade, "training")
    assert "1 label(s) in" in _one_line(exc) and "ADE_train_00000002" in str(exc.value)
    voc = make_voc(tmp_path, ["x1", "x2"], ["x3"])
    (voc / "JPEGImages/x2.jpg").unlink()
    with pytest.raises(DataError, match="1 image\\(s\\) listed in .*train.txt are missing.*x2"):
        VOCDataset(voc, "train")


def test_truncated_image_names_the_file(cityscapes: Path) -> None:
    ds = CityscapesDataset(cityscapes, "train")
    path = ds.samples[0][0]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError) as exc:
        ds[0]
    assert str(path) in _one_line(exc) and "unreadable or truncated image" in str(exc.value)


def test_label_values_outside_classes(tmp_path: Path) -> None:
    ade = make_ade(tmp_path)
    path = ade / "annotations/training/ADE_train_00000001.png"
    label = np.asarray(Image.open(path)).copy()
    label[0, :3] = [151, 200, 200]
    Image.fromarray(label, mode="L").save(path)
    with pytest.raises(DataError) as exc:
        ADE20KDataset(ade, "training")[0]
    msg = _one_line(exc)
    assert str(path) in msg and "[151, 200] (mapped to [150, 199])" in msg
    assert "outside [0, 150)" in msg


def test_rgb_colour_label_refused(cityscapes: Path) -> None:
    ds = CityscapesDataset(cityscapes, "train")
    label_path = ds.samples[0][1]
    colour = np.zeros((32, 64, 3), np.uint8)
    colour[:, :, 0] = 128  # road's colour, not its id
    colour[:, :, 2] = 128
    Image.fromarray(colour).save(label_path)
    with pytest.raises(DataError) as exc:
        ds[0]
    assert str(label_path) in _one_line(exc) and "RGB colour image" in str(exc.value)
    grey = np.repeat(np.full((32, 64, 1), 7, np.uint8), 3, axis=2)  # grey saved as RGB is fine
    Image.fromarray(grey).save(label_path)
    assert (ds[0]["mask"] == 0).all()


def test_worker_error_stays_one_line(tmp_path: Path) -> None:
    """A DataError raised in a DataLoader worker reaches the main process as one line."""
    root = tmp_path / "f"
    (root / "images/train").mkdir(parents=True)
    (root / "masks/train").mkdir(parents=True)
    (root / "images/train/a.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "masks/train/a.png")
    loader = DataLoader(FolderDataset(root, "train", ["bg", "fg"]), num_workers=1)
    with pytest.raises(DataError) as exc:
        next(iter(loader))
    assert _one_line(exc).startswith(f"{root / 'images/train/a.png'}: unreadable")


def test_train_tool_reports_bad_root_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no_cityscapes"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools/train.py"),
            "experiment=cityscapes_ann",
            f"dataset.root={missing}",
            "model=ann_r18",
            f"output_dir={tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: dataset.root: {missing} does not exist (expected")
    assert "Traceback" not in proc.stderr
