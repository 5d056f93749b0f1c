"""``Segmenter``: a trained or converted checkpoint as a Python object.

    from ann import Segmenter
    seg = Segmenter.from_checkpoint("outputs/demo/checkpoints/best.pth", device="cpu")
    mask = seg.predict("photo.png")  # (H, W) int64 class ids
    seg = Segmenter.from_pretrained("ann_r50-d8_512x1024_40k_cityscapes")  # tools/zoo.py list

The model is rebuilt from the config the checkpoint carries (a trained one
holds its resolved config; a converted one names its experiment, whose config
is composed from the installed configs/), without ImageNet weights: only
:meth:`Segmenter.from_pretrained` (a registry name, :mod:`ann.hub.zoo`)
downloads, once. Predictions go through the config's evaluation transform and
:meth:`Evaluator.predict <ann.evaluation.evaluator.Evaluator.predict>`, so they
equal those of ``tools/eval.py`` and ``tools/infer.py``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import Tensor, nn

from ann.config.compose import compose
from ann.config.schema import check_config
from ann.data.base import default_palette, read_image
from ann.evaluation.evaluator import Evaluator
from ann.hub.loading import INFERENCE_GROUPS, checkpoint_config, load_model, open_checkpoint
from ann.hub.zoo import ZooEntry, pretrained_checkpoint
from ann.hub.zoo import list_models as _list_models
from ann.visualization.masks import blend

ImageLike = np.ndarray | Image.Image | str | os.PathLike

__all__ = [
    "ImageLike",
    "Segmenter",
    "checkpoint_config",
    "dataset_labels",
    "eval_transform",
    "list_models",
    "load_model",
]


def list_models(dataset: str | None = None) -> list[ZooEntry]:
    """The model registry (configs/zoo.yaml and the files in ``$ANN_ZOO``),
    optionally only one ``dataset``'s models: entries with ``name``,
    ``source``, ``url``, ``sha256``, ``experiment``, ``dataset``, ``crop``,
    ``schedule`` and the published ``miou`` (``ss``, ``ms_flip``)."""
    return _list_models(dataset)


def dataset_labels(cfg: DictConfig) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """Class names and palette (K RGB triples) of the configured dataset,
    without reading it (its files need not exist where inference runs)."""
    split = cfg.dataset.get("val") or cfg.dataset.get("train")
    cls = get_class(split._target_)
    classes = tuple(split.get("classes") or getattr(cls, "classes", ()) or ())
    if not classes:
        classes = tuple(str(i) for i in range(int(cfg.dataset.num_classes)))
    palette = split.get("palette") or getattr(cls, "palette", ()) or default_palette(len(classes))
    return classes, tuple(tuple(int(c) for c in p) for p in palette)


def eval_transform(cfg: DictConfig) -> Callable[..., tuple[Tensor, Tensor]] | None:
    """The evaluation transform of the configured dataset (resize to the eval
    scale, channel order, normalisation): ``(H, W, 3) uint8, (H, W) uint8 ->
    (3, h, w) float32, (H, W) int64``; None if the dataset defines none."""
    split = cfg.dataset.get("val") or cfg.dataset.get("train")
    return instantiate(split.transforms) if split.get("transforms") else None


def build_evaluator(evaluator_cfg: DictConfig, **options: Any) -> Evaluator:
    """An :class:`Evaluator` from a config's ``evaluator`` keys, with the
    ``options`` that are not None replacing them. Built directly, not through
    ``_target_``: configs saved before the evaluator moved name its old module."""
    known = inspect.signature(Evaluator).parameters
    keys = {k: v for k, v in OmegaConf.to_container(evaluator_cfg, resolve=True).items()}
    keys = {k: v for k, v in keys.items() if k in known}
    keys.update({k: v for k, v in options.items() if v is not None})
    return Evaluator(**keys)


def as_rgb(image: ImageLike) -> np.ndarray:
    """A path, PIL image or (H, W, 3) uint8 RGB array as an (H, W, 3) uint8 RGB array."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(Path(image))
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an (H, W, 3) uint8 RGB array, got {image.dtype} of shape {image.shape}"
            )
        return image
    raise TypeError(
        f"expected an (H, W, 3) uint8 RGB array, a PIL image or a path, got {type(image).__name__}"
    )


class Segmenter:
    """A segmentation model ready to predict images at their own size.

    Build one with :meth:`from_checkpoint` (trained or converted weights) or
    :meth:`from_config` (random weights). ``classes`` holds the K class names
    (index = class id), ``palette`` a (K, 3) uint8 RGB array (``palette[mask]``
    colours a mask), ``config`` the composed config, ``model`` the module.

    The evaluator options are keyword arguments of both constructors and
    default to the config's ``evaluator`` group: ``mode`` (``"whole"`` or
    ``"slide"``, which needs ``crop_size`` and ``stride`` as (h, w)),
    ``scales`` (ratios of the evaluation size) and ``flip``; ``fast=True``
    runs the inference fast path (BatchNorm folded, channels_last by CPU
    class, logits within 1e-4 of eager fp32's) and ``backend`` picks
    ``"torch"``, ``"inductor"`` or ``"onnxruntime"`` (docs/performance.md).
    """

    def __init__(
        self,
        cfg: DictConfig,
        model: nn.Module,
        evaluator: Evaluator,
        device: torch.device | str | None = None,
    ) -> None:
        self.config = cfg
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.evaluator = evaluator
        self.transform = eval_transform(cfg)
        classes, palette = dataset_labels(cfg)
        self.classes: tuple[str, ...] = classes
        self.palette: np.ndarray = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: torch.device | str | None = None,
        *,
        experiment: str | None = None,
        overrides: Sequence[str] = (),
        mode: str | None = None,
        scales: Sequence[float] | None = None,
        flip: bool | None = None,
        crop_size: Sequence[int] | None = None,
        stride: Sequence[int] | None = None,
        fast: bool | None = None,
        backend: str | None = None,
    ) -> Segmenter:
        """Loads a checkpoint of ``tools/train.py`` or ``tools/convert.py``
        (``weights_only``, never downloading anything). ``device`` defaults
        to cuda if available. ``experiment`` rebuilds the model from that
        experiment instead of the checkpoint's own record; ``overrides``
        (``key=value`` strings) change the rebuilt config, e.g. the dataset's
        evaluation ``scale``."""
        path, state = open_checkpoint(path)  # a file or zoo:NAME
        cfg = checkpoint_config(state, path, experiment, overrides)
        evaluator = build_evaluator(
            cfg.evaluator, mode=mode, scales=scales, flip=flip, crop_size=crop_size, stride=stride
        )
        evaluator.use_fast(fast, backend)
        model = load_model(cfg.model, state, path, "cpu")
        return cls(cfg, model, evaluator, device)

    @classmethod
    def from_pretrained(
        cls, name: str, device: torch.device | str | None = None, **options: Any
    ) -> Segmenter:
        """A registry model by name (``python tools/zoo.py list``): downloaded
        once into torch.hub's cache (progress bar, SHA-256 checked), converted
        once, the converted checkpoint cached beside the download; later calls
        need no network. ``options``: those of :meth:`from_checkpoint`. With no
        network and no cached copy: one :class:`ConfigError` line naming the URL
        and the path where a copy can be placed."""
        return cls.from_checkpoint(
            pretrained_checkpoint(name, "from_pretrained"), device, **options
        )

    @classmethod
    def from_config(
        cls,
        experiment: str | None = "demo",
        overrides: Sequence[str] = (),
        device: torch.device | str | None = None,
        *,
        mode: str | None = None,
        scales: Sequence[float] | None = None,
        flip: bool | None = None,
        crop_size: Sequence[int] | None = None,
        stride: Sequence[int] | None = None,
        fast: bool | None = None,
        backend: str | None = None,
    ) -> Segmenter:
        """The model of ``configs/experiment/<experiment>.yaml`` (None: the
        default config) with ``overrides``, randomly initialised: no ImageNet
        weights, never downloading. For shapes, speed or export checks."""
        names = [f"experiment={experiment}"] if experiment else []
        cfg = compose("train", [*names, *overrides])
        check_config(cfg, INFERENCE_GROUPS)
        evaluator = build_evaluator(
            cfg.evaluator, mode=mode, scales=scales, flip=flip, crop_size=crop_size, stride=stride
        )
        evaluator.use_fast(fast, backend)
        return cls(cfg, load_model(cfg.model), evaluator, device)

    def _tensor(self, rgb: np.ndarray) -> Tensor:
        """(H, W, 3) uint8 RGB -> the model's (3, h, w) float32 input (the
        dataset's evaluation transform: resize, channel order, normalisation)."""
        if self.transform is None:
            return torch.from_numpy(rgb).permute(2, 0, 1).float()
        tensor, _ = self.transform(rgb, np.zeros(rgb.shape[:2], dtype=np.uint8))
        return tensor

    @property
    def num_classes(self) -> int:
        """K, the number of classes the model predicts."""
        return len(self.classes)

    @torch.no_grad()
    def scores(self, image: ImageLike) -> Tensor:
        """Class scores of one image at its own size: (K, H, W) float32 on the
        CPU (softmax probabilities or logits, as ``evaluator.average`` says)."""
        rgb = as_rgb(image)
        tensor = self._tensor(rgb)
        self.model.eval()
        out = self.evaluator.predict(self.model, tensor[None].to(self.device), rgb.shape[:2])
        return out[0].float().cpu()

    @torch.no_grad()
    def predict(
        self, images: ImageLike | Sequence[ImageLike], batch_size: int = 8
    ) -> np.ndarray | list[np.ndarray]:
        """Class ids of an image: an (H, W, 3) uint8 RGB array, a PIL image or
        a path -> an (H, W) int64 array at the image's size. A list of images
        (any sizes) -> a list of such arrays, in order; images of one size go
        through the model together, ``batch_size`` at a time (the masks equal
        one-at-a-time prediction: every layer treats a batch's images apart)."""
        if not isinstance(images, (list, tuple)):
            return self.scores(images).argmax(0).numpy().astype(np.int64)
        rgbs = [as_rgb(image) for image in images]
        tensors = [self._tensor(rgb) for rgb in rgbs]
        sizes = [rgb.shape[:2] for rgb in rgbs]
        masks = self.evaluator.predict_masks(self.model.eval(), tensors, sizes, batch_size)
        return [m.numpy().astype(np.int64) for m in masks]

    def overlay(self, image: ImageLike, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """``image`` with ``mask`` (H, W) class ids drawn in :attr:`palette`
        colours over it: ``alpha`` of the colour, ``1 - alpha`` of the image ->
        (H, W, 3) uint8 RGB. Pixels whose id is no class (255: ignore) keep
        the image's colour."""
        rgb = as_rgb(image)
        mask = np.asarray(mask)
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"mask of shape {mask.shape} for an image of size {rgb.shape[:2]}")
        known = (mask >= 0) & (mask < len(self.palette))
        colours = np.where(known[..., None], self.palette[np.where(known, mask, 0)], rgb)
        return blend(rgb, colours, alpha)

    def __repr__(self) -> str:
        ev = self.evaluator
        return (
            f"Segmenter({self.config.get('name', '?')}: {self.num_classes} classes, "
            f"mode={ev.mode}, scales={ev.scales}, flip={ev.flip}, device={self.device})"
        )
