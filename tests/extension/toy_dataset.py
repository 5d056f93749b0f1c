"""A dataset from outside the package (docs/contributing.md, "A dataset").
A real one lists its image and label files under ``root`` in ``__init__``
(``self.samples``) and lets :class:`SegmentationDataset` read them; this one
draws its samples instead, so the test needs no files: noisy images whose
left part is dark (class 0, "shade") and right part bright (class 1, "light"),
the border between them at a random column."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ann.data.base import SegmentationDataset


class StripesDataset(SegmentationDataset):
    classes = ("shade", "light")

    def __init__(
        self,
        root: str,
        split: str,
        num_samples: int = 8,
        size: int = 32,
        transforms: Callable | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(transforms, ignore_index)
        self.root, self.split = root, split
        self.num_samples, self.size = num_samples, size
        self.seed = 0 if split == "train" else 10_000

    def __len__(self) -> int:
        return self.num_samples

    def sample_name(self, index: int) -> str:
        return f"{self.split}_{index:03d}"

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index``: image (H, W, 3) uint8, label (H, W) uint8."""
        rng = np.random.default_rng(self.seed + index)
        border = int(rng.integers(self.size // 4, 3 * self.size // 4))
        label = np.zeros((self.size, self.size), dtype=np.uint8)
        label[:, border:] = 1
        noise = rng.normal(0, 20, (self.size, self.size, 3))
        image = np.clip(60 + 140 * label[..., None] + noise, 0, 255).astype(np.uint8)
        return image, label
