"""``browse(cfg)``: what the model is fed, as tools/browse_dataset.py writes it.

The same ``browse.num`` images of one split go through the dataset's
training pipeline (``cfg.dataset.train.transforms``: rescale, crop, flip,
photometric distortion, padding) and through its evaluation pipeline
(``cfg.dataset.val.transforms``), and come back un-normalised with their
masks overlaid, so that a wrong mean/std, channel order, label mapping or
crop shows at a glance.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image

from ann.config.schema import check_config
from ann.errors import ConfigError
from ann.visualization.figures import save_figure
from ann.visualization.masks import denormalize, resize_rgb
from ann.visualization.samples import overlay, overview_figure

log = logging.getLogger(__name__)

PIPELINES = ("train", "val")
OVERVIEW_PNG = "overview.png"
# The overview shows each panel at most this wide: 16 full-size Cityscapes
# panels would be 200 MB of pixels, more than a page can show anyway.
_OVERVIEW_WIDTH = 1200


def render_sample(sample: dict, transform: object, dataset: object, alpha: float) -> np.ndarray:
    """One transformed sample as image | overlay, (H, 2·W, 3) uint8 at the mask's size.

    ``sample`` is a dataset item ({"image": (3, h, w) normalised, "mask": (H, W)});
    the image is un-normalised by ``transform``'s own ``to_rgb`` (its mean,
    std and channel order), else by the ImageNet statistics.
    """
    mask = sample["mask"].numpy() if torch.is_tensor(sample["mask"]) else sample["mask"]
    rgb = resize_rgb(denormalize(sample["image"], transform), tuple(mask.shape))
    shown = overlay(rgb, mask, dataset.palette, dataset.ignore_index, alpha)
    return np.concatenate([rgb, shown], axis=1)


def _thumbnail(panel: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> at most ``_OVERVIEW_WIDTH`` wide, area-averaged."""
    height, width = panel.shape[:2]
    if width <= _OVERVIEW_WIDTH:
        return panel
    size = (_OVERVIEW_WIDTH, max(1, round(height * _OVERVIEW_WIDTH / width)))
    return np.asarray(Image.fromarray(panel).resize(size, Image.BOX))


def _pipeline(cfg: DictConfig, split: str) -> object:
    """The transform of ``cfg.dataset.<split>``, instantiated on its own."""
    node = cfg.dataset[split]
    if node.get("transforms") is None:
        raise ConfigError(f"dataset.{split}.transforms: missing; browse draws that pipeline")
    return instantiate(node.transforms)


def _check(cfg: DictConfig) -> tuple[int, str]:
    """browse.num and browse.split, checked (one-line ConfigError)."""
    num, split = cfg.browse.num, cfg.browse.split
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ConfigError(f"browse.num={num!r}: expected a positive integer")
    if split not in PIPELINES:
        raise ConfigError(f"browse.split={split!r}: expected one of {', '.join(PIPELINES)}")
    return num, split


def browse(cfg: DictConfig) -> list[Path]:
    """Writes ``browse.num`` images of ``browse.split`` through each pipeline to
    ``cfg.output_dir``: ``train_000.png`` ... and ``val_000.png`` ... (each
    image | overlay at the transformed size; ``train_i`` and ``val_i`` are the
    same source image) and ``overview.png`` (all of them with a class legend).
    Returns the paths, the overview last."""
    check_config(cfg, ("dataset",))
    num, split = _check(cfg)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipelines = {name: _pipeline(cfg, name) for name in PIPELINES}
    dataset = instantiate(cfg.dataset[split])
    if len(dataset) == 0:
        raise ConfigError(f"dataset.{split}: no samples to browse")
    if num > len(dataset):
        log.warning("browse.num=%d: dataset.%s has %d samples", num, split, len(dataset))
    seed = int(cfg.browse.seed)
    rng = np.random.default_rng(seed)
    indices = sorted(rng.choice(len(dataset), size=min(num, len(dataset)), replace=False))
    alpha = float(cfg.browse.alpha)
    panels: dict[str, list[np.ndarray]] = {name: [] for name in PIPELINES}
    present: set[int] = set()
    paths = []
    for i, index in enumerate(indices):
        for name, transform in pipelines.items():
            dataset.transforms = transform
            # (index, seed): the augmentation of sample i is reproducible.
            sample = dataset[(int(index), seed + i)]
            panel = render_sample(sample, transform, dataset, alpha)
            path = out_dir / f"{name}_{i:03d}.png"
            Image.fromarray(panel).save(path)
            paths.append(path)
            panels[name].append(_thumbnail(panel))
            present.update(int(v) for v in np.unique(sample["mask"].numpy()))
    names = [dataset.sample_name(int(i)) for i in indices]
    paths.append(
        save_figure(overview_figure(panels, names, dataset, present), out_dir / OVERVIEW_PNG)
    )
    return paths
