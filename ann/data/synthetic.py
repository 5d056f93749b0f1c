"""A deterministic synthetic dataset whose labels need context.

Every region — background and object interiors alike — is painted with a
texture drawn from one shared distribution (random colour, stripes, noise),
so the colour or local patch of an interior pixel says nothing about its
class. Each object (a disc, square, triangle or cross: the shape does not
matter) is outlined by a thin frame, and the frame's colour is the object's
class. To label a pixel in the middle of an object a model must find the
object's frame, up to a quarter of the image away: it needs context, which is
what the non-local heads aggregate.

Also street-like scenes (:func:`street_scenes`) for the benchmarks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import binary_erosion

from ann.data.folder import FolderDataset

SHAPES_CLASSES = ("background", "red", "green", "blue", "yellow")
# The frame colours, which are also the palette for drawing predictions.
SHAPES_PALETTE = ((0, 0, 0), (230, 30, 30), (30, 200, 40), (30, 70, 235), (235, 210, 30))
FRAME_WIDTH = 2


def _texture(rng: np.random.Generator, size: int, base: np.ndarray) -> np.ndarray:
    """(size, size, 3) float texture around colour ``base``: stripes + noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(0.15, 0.6)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * freq + rng.uniform(0, 6.3))
    amp = rng.uniform(10, 35)
    noise = rng.normal(0, rng.uniform(5, 15), (size, size, 3))
    return base[None, None, :] + amp * stripes[..., None] + noise


def _shape_mask(kind: int, size: int, cy: float, cx: float, r: float, rot: float) -> np.ndarray:
    """Boolean (size, size) mask of outline ``kind`` (1..4: disc, square, triangle, cross) centred at (cy, cx), radius r."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(rot), np.sin(rot)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if kind == 1:  # disc
        return dx**2 + dy**2 <= r**2
    if kind == 2:  # square
        h = r * 0.85
        return (np.abs(u) <= h) & (np.abs(v) <= h)
    if kind == 3:  # equilateral triangle pointing along v
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            a = rot + np.pi / 2 + k * 2 * np.pi / 3
            inside &= dx * np.cos(a) + dy * np.sin(a) <= r * 0.55
        return inside
    if kind == 4:  # cross: two bars
        w = r * 0.38
        return ((np.abs(u) <= r) & (np.abs(v) <= w)) | ((np.abs(v) <= r) & (np.abs(u) <= w))
    raise ValueError(kind)


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: image (size, size, 3) uint8 and label (size, size) uint8."""
    image = _texture(rng, size, rng.uniform(40, 215, 3))
    label = np.zeros((size, size), dtype=np.uint8)
    occupied = np.zeros((size, size), dtype=bool)
    for _ in range(int(rng.integers(1, 3))):
        # Objects do not overlap, so every object keeps its whole frame.
        for _ in range(20):
            r = rng.uniform(0.2, 0.3) * size
            cy, cx = rng.uniform(r * 0.8, size - r * 0.8, 2)
            shape = int(rng.integers(1, 5))
            mask = _shape_mask(shape, size, cy, cx, r, rng.uniform(0, 2 * np.pi))
            if not (mask & occupied).any():
                break
        else:
            continue
        cls = int(rng.integers(1, len(SHAPES_CLASSES)))
        occupied |= mask
        frame = mask & ~binary_erosion(mask, iterations=FRAME_WIDTH)
        image[mask] = _texture(rng, size, rng.uniform(40, 215, 3))[mask]
        image[frame] = np.asarray(SHAPES_PALETTE[cls]) + rng.normal(0, 8, (int(frame.sum()), 3))
        label[mask] = cls
    return np.clip(image, 0, 255).astype(np.uint8), label


def generate_shapes(
    root: str | Path, num_train: int = 400, num_val: int = 100, size: int = 64, seed: int = 0
) -> Path:
    """Writes ``images/{train,val}/NNNNN.png`` and ``masks/{train,val}/NNNNN.png``.

    Deterministic in ``seed``. The tree is built in a temporary folder and
    renamed into place, so concurrent callers (e.g. DDP ranks) never see a
    half-written dataset. Returns ``root``.
    """
    root = Path(root)
    if (root / "images").is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        for split, count, offset in (("train", num_train, 0), ("val", num_val, 1)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "masks" / split).mkdir(parents=True)
            rng = np.random.default_rng([seed, offset])
            for i in range(count):
                image, label = render_scene(rng, size)
                Image.fromarray(image).save(tmp / "images" / split / f"{i:05d}.png")
                mask = Image.fromarray(label, mode="L")
                mask.save(tmp / "masks" / split / f"{i:05d}.png")
        try:
            os.replace(tmp, root)
        except OSError:
            if not (root / "images").is_dir():  # lost a race only if another caller won it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def street_scenes(
    count: int, width: int = 2048, height: int = 1024, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` street-like samples (for the benchmarks): smooth (H, W, 3) uint8
    images and (H, W) uint8 labels of horizontal class bands in [0, 19) with
    void (255) blobs; at least 256x128."""
    import cv2

    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        image = np.clip(image.astype(np.int16) + rng.integers(-8, 8, image.shape), 0, 255)
        bands = np.sort(rng.choice(np.arange(1, height), 7, replace=False))
        label = np.searchsorted(bands, np.arange(height))[:, None].repeat(width, 1)
        label = (label * 2 + (np.arange(width)[None] // 300) % 2).astype(np.uint8) % 19
        for _ in range(5):
            y, x = rng.integers(0, height - 100), rng.integers(0, width - 200)
            label[y : y + 100, x : x + 200] = 255
        samples.append((image.astype(np.uint8), label))
    return samples


def write_street_scenes(
    root: Path, count: int, width: int, height: int, classes: int = 19, ignore: int = 255
) -> Path:
    """:func:`street_scenes` as PNG pairs in the folder layout images/train,
    masks/train (labels modulo ``classes``, void as ``ignore``); returns ``root``."""
    for sub in ("images/train", "masks/train"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(street_scenes(count, width, height)):
        Image.fromarray(image).save(root / "images/train" / f"{i:04d}.png")
        mask = np.where(label == 255, ignore, label % classes).astype(np.uint8)
        Image.fromarray(mask).save(root / "masks/train" / f"{i:04d}.png")
    return root


class ShapesDataset(FolderDataset):
    """The synthetic shapes data, generated under ``root`` on first use."""

    classes = SHAPES_CLASSES
    palette = SHAPES_PALETTE

    def __init__(
        self,
        root: str | Path,
        split: str,
        transforms: Callable | None = None,
        num_train: int = 400,
        num_val: int = 100,
        size: int = 64,
        seed: int = 0,
        ignore_index: int = 255,
    ) -> None:
        generate_shapes(root, num_train, num_val, size, seed)
        super().__init__(
            root,
            split,
            SHAPES_CLASSES,
            SHAPES_PALETTE,
            transforms=transforms,
            ignore_index=ignore_index,
        )
