"""Published ImageNet weights by short name, fetched once into torch's hub cache."""

from __future__ import annotations

import copy
import http.client
import logging
import socket
import urllib.error
from pathlib import Path

import torch.hub
from omegaconf import DictConfig, open_dict

from ann.errors import ConfigError

log = logging.getLogger(__name__)

# The ResNet-V1c (deep stem 32/32/64) ImageNet weights that mmsegmentation's
# recipes start from ("open-mmlab://resnet50_v1c"). The 8 hex digits in each
# name are the start of the file's SHA-256, which torch.hub checks on download.
V1C_URLS = {
    50: "https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
    101: "https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth",
}
# mmsegmentation's own spelling of the same files, accepted as aliases.
_ALIASES = {"open-mmlab://resnet50_v1c": (50, "v1c"), "open-mmlab://resnet101_v1c": (101, "v1c")}
# Seconds a download waits for a connection or for the next bytes.
DOWNLOAD_TIMEOUT_S = 20.0


def is_short_name(pretrained: str | None) -> bool:
    """True for the names this module resolves (``v1c``, ``open-mmlab://resnetXX_v1c``)."""
    return pretrained == "v1c" or pretrained in _ALIASES


def cache_path(url: str) -> Path:
    """Where torch.hub keeps ``url``: ``$TORCH_HOME/hub/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def v1c_url(depth: int, pretrained: str = "v1c") -> str:
    """The V1c weights URL for a ResNet ``depth`` (50 or 101)."""
    if pretrained in _ALIASES and _ALIASES[pretrained][0] != depth:
        raise ConfigError(
            f"model.backbone.pretrained={pretrained} is for ResNet-{_ALIASES[pretrained][0]}, "
            f"but model.backbone.depth={depth}; use model.backbone.pretrained=v1c"
        )
    if depth not in V1C_URLS:
        raise ConfigError(
            f"model.backbone.pretrained=v1c: V1c ImageNet weights are published for depth "
            f"{sorted(V1C_URLS)}, not {depth}; pass a .pth file or model.backbone.pretrained=null"
        )
    return V1C_URLS[depth]


def fetch(
    url: str,
    *,
    path: Path | None = None,
    sha256: str | None = None,
    key: str = "model.backbone.pretrained",
    hint: str = ", or pass model.backbone.pretrained=null to train from scratch on purpose",
) -> Path:
    """Returns the cached copy of ``url`` (``path``, default :func:`cache_path`),
    downloading it first (progress bar, SHA-256 checked: ``sha256`` or the
    prefix in the file name, any length) if the cache lacks it. Offline,
    raises one :class:`ConfigError` line naming ``key``, the URL and the exact
    cache path (then ``hint``); a wrong hash or a broken download leaves
    nothing in the cache."""
    path = path or cache_path(url)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if sha256 is None:
        found = torch.hub.HASH_REGEX.search(path.name)
        sha256 = found.group(1) if found else None
    # torch.hub opens the URL without a timeout: a host that drops packets would
    # hang the connect for minutes. Bound each connect and read instead.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(previous or DOWNLOAD_TIMEOUT_S)
    try:
        # Writes to a temporary file and renames it, so a broken download never sits in the cache.
        torch.hub.download_url_to_file(url, str(path), hash_prefix=sha256 or None)
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or repr(exc)
        raise ConfigError(
            f"{key}: could not download {url} ({reason}); place a copy at {path}{hint}"
        ) from None
    except RuntimeError as exc:  # torch.hub's hash mismatch
        raise ConfigError(
            f"{key}: the download of {url} is damaged ({exc}); it was not kept, run again"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    log.info("downloaded %s to %s", url, path)
    return path


def ensure_available(backbone_cfg: DictConfig | None) -> None:
    """Fetches a backbone config's named ImageNet weights now, so that an
    offline run stops before it builds anything. A no-op for files and null."""
    pretrained = None if backbone_cfg is None else backbone_cfg.get("pretrained")
    if isinstance(pretrained, str) and is_short_name(pretrained):
        fetch(v1c_url(int(backbone_cfg.get("depth", 50)), pretrained))


def without_pretrained(model_cfg: DictConfig) -> DictConfig:
    """A copy of a model config whose backbone loads no ImageNet weights, for
    models that a checkpoint will fill (eval, infer, export, resume, load_from):
    they never download and work offline."""
    cfg = copy.deepcopy(model_cfg)
    backbone = cfg.get("backbone")
    if isinstance(backbone, DictConfig) and "pretrained" in backbone:
        with open_dict(cfg):
            cfg.backbone.pretrained = None
    return cfg
