"""The model registry: published (and a team's own) models by name.

``configs/zoo.yaml`` (shipped in the package) lists them as data; a user's
files of the same shape add to it (``ANN_ZOO=my_models.yaml``, several
separated by commas; each an https/http/file URL or a plain path). For a
name, :func:`pretrained_checkpoint` downloads the file once into torch.hub's
cache (progress bar, SHA-256 checked: :func:`ann.models.pretrained.fetch`),
converts it once with :mod:`ann.convert` and keeps the converted checkpoint
beside the download, so that later loads need no network.

    $TORCH_HOME/hub/checkpoints/<file name>            the download
    $TORCH_HOME/hub/checkpoints/<file stem>.ann.pth    the converted checkpoint
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ann.config.compose import config_dir
from ann.convert import convert
from ann.engine.checkpoint import save_checkpoint
from ann.errors import CheckpointError, ConfigError
from ann.models.pretrained import fetch

log = logging.getLogger(__name__)

PREFIX = "zoo:"
ENV = "ANN_ZOO"
SOURCES = ("mmseg", "official", "ann")
# A remote registry is a few KB: past this many seconds the host is not answering.
_REGISTRY_TIMEOUT_S = 10


@dataclass
class ZooEntry:
    """One registry entry (see configs/zoo.yaml's header for the keys)."""

    name: str
    source: str
    url: str | None
    experiment: str
    sha256: str | None = None
    file: str | None = None
    page: str | None = None
    dataset: str | None = None
    backbone: str | None = None
    crop: list[int] = field(default_factory=list)
    schedule: str | None = None
    miou: dict[str, float | None] = field(default_factory=dict)
    registry: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The entry as plain JSON values."""
        return asdict(self)

    @property
    def remote(self) -> bool:
        """Whether the file comes over http(s) (else it is a local file)."""
        return bool(self.url) and urllib.parse.urlsplit(self.url).scheme in ("http", "https")

    def source_path(self) -> Path:
        """Where the original file is (local entries) or is cached (the rest)."""
        if self.url and not self.remote:
            parts = urllib.parse.urlsplit(self.url)
            if parts.scheme == "file":
                return Path(urllib.request.url2pathname(parts.path))
            return Path(self.url).expanduser()
        name = Path(urllib.parse.urlsplit(self.url).path).name if self.url else self.file
        return cache_dir() / str(name)

    def converted_path(self) -> Path:
        """Where the converted checkpoint is cached (for ``source: ann``, the file itself)."""
        if self.source == "ann":
            return self.source_path()
        return cache_dir() / f"{self.source_path().stem}.ann.pth"


def cache_dir() -> Path:
    """torch.hub's checkpoint cache: ``$TORCH_HOME/hub/checkpoints``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def registry_sources() -> list[str]:
    """The package's configs/zoo.yaml, then each file or URL in ``$ANN_ZOO``."""
    extra = [s.strip() for s in os.environ.get(ENV, "").split(",") if s.strip()]
    return [str(config_dir() / "zoo.yaml"), *extra]


def _registry_copy(url: str) -> Path:
    """Where the last good copy of a remote registry is kept, for offline use."""
    return cache_dir() / "registries" / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.yaml"


def _read_text(spec: str) -> str:
    """A registry's text. A remote one is kept beside the checkpoints, and that
    copy is read when the host cannot be reached (so cached models load offline)."""
    remote = urllib.parse.urlsplit(spec).scheme in ("http", "https")
    try:
        if remote or urllib.parse.urlsplit(spec).scheme == "file":
            with urllib.request.urlopen(spec, timeout=_REGISTRY_TIMEOUT_S) as response:
                text = response.read().decode()
            if remote:
                copy = _registry_copy(spec)
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_text(text)
            return text
        return Path(spec).expanduser().read_text()
    except (OSError, urllib.error.URLError, UnicodeDecodeError) as exc:
        if remote and _registry_copy(spec).is_file():
            log.warning(
                "%s: could not read %s; using its copy of %s", ENV, spec, _registry_copy(spec)
            )
            return _registry_copy(spec).read_text()
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise ConfigError(f"{ENV}: could not read the model registry {spec} ({reason})") from None


def _entry(name: str, raw: Any, spec: str) -> ZooEntry:
    """A checked entry; plain relative paths resolve against the registry's folder."""
    where = f"{ENV}: {spec}: model {name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(ZooEntry.__dataclass_fields__) - {"name", "registry"})
    missing = [k for k in ("source", "experiment") if not raw.get(k)]
    if unknown or missing:
        what = f"unknown key(s) {unknown}" if unknown else f"missing key(s) {missing}"
        raise ConfigError(f"{where}: {what} (see configs/zoo.yaml for an entry's keys)")
    if raw["source"] not in SOURCES:
        raise ConfigError(f"{where}: source must be one of {list(SOURCES)}, got {raw['source']!r}")
    if not raw.get("url") and not raw.get("file"):
        raise ConfigError(f"{where}: needs a url (or, without one, the file to place by hand)")
    entry = ZooEntry(**{**raw, "name": name, "registry": spec})
    local = entry.url and not urllib.parse.urlsplit(entry.url).scheme
    base_is_local = urllib.parse.urlsplit(spec).scheme in ("", "file")
    if local and base_is_local and not Path(entry.url).expanduser().is_absolute():
        folder = Path(urllib.request.url2pathname(urllib.parse.urlsplit(spec).path)).parent
        entry.url = str(folder / entry.url)
    entry.sha256 = str(entry.sha256).lower() if entry.sha256 else None
    return entry


def read_registry(spec: str) -> dict[str, ZooEntry]:
    """The entries of one registry file or URL, by name."""
    try:
        data = yaml.safe_load(_read_text(spec))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{ENV}: {spec} is not valid YAML ({str(exc).splitlines()[0]})") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ConfigError(f"{ENV}: {spec}: expected a top-level 'models:' mapping of name -> entry")
    return {str(name): _entry(str(name), raw, spec) for name, raw in models.items()}


def registry() -> dict[str, ZooEntry]:
    """Every entry: the package's, then the user's (a user entry wins on a name clash)."""
    entries: dict[str, ZooEntry] = {}
    for spec in registry_sources():
        entries.update(read_registry(spec))
    return entries


def list_models(dataset: str | None = None) -> list[ZooEntry]:
    """The registry's entries in file order, optionally only those of ``dataset``."""
    return [e for e in registry().values() if dataset is None or e.dataset == dataset]


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name`` (``zoo:`` prefix allowed); one line naming close matches if none."""
    name = name.removeprefix(PREFIX)
    entries = registry()
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "python tools/zoo.py list shows them"
    raise ConfigError(f"no model {name!r} in the registry ({hint})")


def _check_local_hash(path: Path, sha256: str | None) -> None:
    if not sha256:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(sha256):
        raise CheckpointError(
            f"{path}: SHA-256 {digest.hexdigest()} does not start with the registry's {sha256}"
        )


def source_file(entry: ZooEntry, key: str = "zoo") -> Path:
    """The entry's original file on this machine, downloaded first if need be."""
    path = entry.source_path()
    if entry.remote:
        return fetch(entry.url, path=path, sha256=entry.sha256, key=f"{key} {entry.name}", hint="")
    if not path.is_file():
        where = f" (from {entry.page})" if entry.page else ""
        origin = "" if entry.url else " has no stable URL:"
        raise ConfigError(
            f"{key} {entry.name}:{origin} no file at {path}; download it{where} and place it there"
        )
    _check_local_hash(path, entry.sha256)
    return path


def pretrained_checkpoint(name: str, key: str = "zoo") -> Path:
    """A checkpoint of this project for the registry model ``name``: the
    cached converted file when there is one (no network), else the source
    file fetched, converted and written atomically beside it. Its
    ``experiment`` is the entry's."""
    entry = get_entry(name)
    if entry.source == "ann":  # used as it is (a local file's hash checked on every use)
        return source_file(entry, key)
    out = entry.converted_path()
    if out.is_file():
        return out
    src = source_file(entry, key)
    try:
        converted = convert(entry.source, src)
    except CheckpointError:
        if not entry.remote:
            raise
        # A download cut short passes torch.hub when no hash is known: it is
        # not kept, so that the next try fetches it again.
        src.unlink(missing_ok=True)
        raise ConfigError(
            f"{key} {entry.name}: the download of {entry.url} is incomplete or damaged "
            "(it does not load as a checkpoint); it was not kept, run again"
        ) from None
    state = converted.checkpoint(entry.url or src)
    state["experiment"] = entry.experiment
    state["zoo"] = entry.name
    save_checkpoint(state, out)
    return out


def resolve(spec: str | os.PathLike, key: str = "checkpoint") -> Path:
    """``zoo:NAME`` -> :func:`pretrained_checkpoint`; any other value is a path."""
    text = str(spec)
    if text.startswith(PREFIX):
        return pretrained_checkpoint(text, key)
    return Path(text)
