"""Checkpoint files: one atomic write per save, ``last.pth`` and ``best.pth``
as hard links to it, a free-space check before writing, and resume from the
newest complete file. Loaded with weights_only=True."""

from __future__ import annotations

import errno
import logging
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ann.config.compat import upgrade_config
from ann.errors import CheckpointError, CheckpointSaveError, UnsafeCheckpointError
from ann.safe_load import load_tensors

log = logging.getLogger(__name__)

_ITER_FILE = re.compile(r"iter_(\d+)\.pth")
# Zip headers and the pickled rest (config, RNG states) beside the tensor data;
# measured ~350 bytes a tensor plus ~40 KB for the demo model.
_PER_TENSOR_BYTES = 1024
_MARGIN_BYTES = 2**20
# errno values of a filesystem that has no hard links (FAT, some FUSE and
# object-store mounts) or refuses one here; the others are real failures.
_NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
_copy_warned: set[Path] = set()


def iter_name(iteration: int) -> str:
    """The name of the one file a save at ``iteration`` writes."""
    return f"iter_{iteration:07d}.pth"


def checkpoint_bytes(state: Any) -> int:
    """An upper estimate of the size of ``torch.save(state)``: every tensor
    storage once (views share theirs), plus headers and a margin for the
    non-tensor values."""
    storages: dict[tuple[str, int], int] = {}
    count = 0

    def walk(value: Any) -> None:
        nonlocal count
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            storages[(str(value.device), storage.data_ptr())] = storage.nbytes()
            count += 1
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(state)
    return sum(storages.values()) + count * _PER_TENSOR_BYTES + _MARGIN_BYTES


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _free_bytes(folder: Path) -> int | None:
    """Bytes free in ``folder``'s filesystem; None where it cannot tell."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _reason(exc: BaseException) -> str:
    """One line for what a failed write raised; torch's zip writer reports a
    full disk as "[enforce fail at inline_container.cc] . unexpected pos"."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    text = str(exc).strip()
    if "unexpected pos" in text or "file write failed" in text:
        return "the disk is full"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return text.splitlines()[0] if text else type(exc).__name__


def _save_error(path: Path, reason: str, needed: int) -> CheckpointSaveError:
    free = _free_bytes(path.parent)
    free_text = "unknown" if free is None else f"{_mib(free)} ({free} bytes)"
    return CheckpointSaveError(
        f"could not save checkpoint {path}: {reason}; a checkpoint needs {_mib(needed)} "
        f"({needed} bytes), free there: {free_text}. Free space, keep fewer checkpoints "
        "(trainer.keep_last=N) or write elsewhere (output_dir=DIR)"
    )


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Writes ``state`` to a temporary file beside ``path``, fsyncs it and
    renames it into place, so a kill or a full disk during the save never
    leaves a broken file and never touches the previous one.

    Checks the free space first (:func:`checkpoint_bytes`). A full disk or
    any other error of the write is a :class:`CheckpointSaveError` naming
    the path and the bytes needed and free; the temporary file is removed.
    """
    path = Path(path)
    needed = checkpoint_bytes(state)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        free = _free_bytes(path.parent)
        if free is not None and needed > free:
            raise _save_error(path, "not enough free space", needed)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as exc:
        raise _save_error(path, _reason(exc), needed) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def link_checkpoint(target: Path, name: Path) -> None:
    """Points ``name`` (``last.pth``, ``best.pth``) at the data of ``target``:
    a hard link made under a temporary name and renamed over ``name``, so
    ``name`` is at every moment either the old file or the new one, and
    costs no space or write. Where the filesystem has no hard links it is a
    copy instead (said once in the log)."""
    if name.exists() and os.path.samefile(target, name):
        return  # rename() between two links of one file would do nothing
    tmp = name.with_name(f".{name.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(target, tmp)
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if name.parent not in _copy_warned:
                _copy_warned.add(name.parent)
                log.warning(
                    "%s refuses hard links (%s): last.pth and best.pth are full copies, "
                    "each save writes them again",
                    name.parent,
                    exc.strerror,
                )
            with open(target, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 16 * 2**20)
                dst.flush()
                os.fsync(dst.fileno())
        os.replace(tmp, name)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        raise _save_error(name, _reason(exc), target.stat().st_size) from None


def write_checkpoint(
    state: dict[str, Any], ckpt_dir: str | Path, iteration: int, links: list[str]
) -> Path:
    """One save: writes ``state`` once, to ``iter_NNNNNNN.pth``, then points
    each of ``links`` (``best.pth``, then ``last.pth``) at it. The links move
    only after the file is complete, so a failed or killed save leaves the
    previous ``last.pth`` as it was. Returns the written file."""
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / iter_name(iteration)
    save_checkpoint(state, path)
    for name in links:
        link_checkpoint(path, ckpt_dir / name)
    return path


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def iter_files(ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    """The ``iter_*.pth`` files of ``ckpt_dir`` with their iterations, oldest first."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return []
    found = [(_ITER_FILE.fullmatch(p.name), p) for p in folder.iterdir()]
    return sorted((int(m.group(1)), p) for m, p in found if m is not None)


def prune_checkpoints(
    ckpt_dir: str | Path, keep: int, periodic: Callable[[int], bool]
) -> list[Path]:
    """Deletes the ``iter_*.pth`` files a run no longer needs; returns them.

    Kept: the newest ``keep`` periodic ones (``periodic(iteration)``: the
    iterations of ``trainer.ckpt_interval``), and whichever file ``last.pth``
    or ``best.pth`` links to, under its iter name too, so the folder shows
    what takes space. A file's data lives while any of its names does, so
    the disk holds at most ``keep + 2`` checkpoints (fewer when the last or
    best one is among the newest periodic ones), each once.
    """
    ckpt_dir = Path(ckpt_dir)
    linked = {_inode(ckpt_dir / name) for name in ("last.pth", "best.pth")} - {None}
    files = iter_files(ckpt_dir)
    newest = [p for it, p in files if periodic(it)][-keep:] if keep > 0 else []
    removed = [p for _, p in files if p not in newest and _inode(p) not in linked]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def has_checkpoint(ckpt_dir: str | Path) -> bool:
    """Whether ``ckpt_dir`` holds a file that a resume would start from."""
    return (Path(ckpt_dir) / "last.pth").is_file() or bool(iter_files(ckpt_dir))


def _unreadable(exc: CheckpointError) -> bool:
    """A torn or damaged file, not one refused for safety (which stops the run)."""
    return not isinstance(exc, UnsafeCheckpointError)


def load_newest(
    ckpt_dir: str | Path, map_location: str | torch.device = "cpu", key: str = "trainer.resume"
) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete checkpoint in ``ckpt_dir``, and its state.

    That is ``last.pth``, or a newer ``iter_*.pth`` when a save stopped
    after writing it but before moving ``last.pth`` (or ``last.pth`` is
    missing or torn). Between two names of one file, ``last.pth`` is the
    one reported. A file that does not load is skipped with a warning, and
    the next newest tried; one that holds code is refused
    (:class:`CheckpointError`), as is a folder where no file loads. None
    when there is no checkpoint at all.
    """
    ckpt_dir = Path(ckpt_dir)
    last = ckpt_dir / "last.pth"
    files = iter_files(ckpt_dir)
    # (iteration, last.pth first on a tie, path, state if already loaded)
    ranked: list[tuple[int, int, Path, dict[str, Any] | None]] = [
        (it, 0, p, None) for it, p in files
    ]
    failures: list[str] = []
    if last.is_file():
        same = [it for it, p in files if _inode(p) == _inode(last)]
        if same:
            ranked.append((same[0], 1, last, None))
        else:  # a copy, or a file put there by hand: only its content tells its iteration
            try:
                state = load_checkpoint(last, map_location, key)
                ranked.append((int(state["iteration"]), 1, last, state))
            except CheckpointError as exc:
                if not _unreadable(exc):
                    raise
                log.warning("skipped %s: %s", last, exc)
                failures.append(str(exc))
    for _, _, path, state in sorted(ranked, key=lambda r: r[:2], reverse=True):
        try:
            if state is None:
                state = load_checkpoint(path, map_location, key)
            return path, state
        except CheckpointError as exc:
            if not _unreadable(exc):
                raise
            log.warning("skipped %s (falling back to an older checkpoint): %s", path, exc)
            failures.append(str(exc))
    if failures:
        raise CheckpointError(
            f"{key}: no checkpoint in {ckpt_dir} loads ({failures[0]}); move the folder "
            "away to train from iteration 0"
        )
    return None


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Deletes the temporary files of saves that a hard kill interrupted
    (``.NAME.pth.XXXX`` beside the checkpoints); returns them."""
    stale = sorted(Path(folder).glob(".*.pth.*")) if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", key: str = "checkpoint"
) -> dict[str, Any]:
    """Loads a checkpoint dict with ``weights_only=True``; one clear error
    naming ``key`` (the config key that named the file) if the file is
    missing, holds code, or is not a checkpoint of this framework."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{key}: no file at {path}")
    state = load_tensors(path, key, map_location)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{key}: {path}: expected a dict with a 'model' state dict")
    if isinstance(state.get("config"), dict):
        # A config saved by an older version may name classes since moved.
        state["config"] = upgrade_config(state["config"])
    return state


def load_model_weights(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Loads ``state["model"]`` strictly, naming the mismatch if the checkpoint
    was trained with another architecture or number of classes."""
    weights = state["model"]
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} shape mismatch(es), e.g. {k}: checkpoint "
                f"{tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
            )
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise CheckpointError(
            f"checkpoint {path} does not fit the configured model (another architecture "
            f"or number of classes?): {'; '.join(parts)}"
        )
    model.load_state_dict(weights)


def rng_state() -> dict[str, Any]:
    """Torch, CUDA, numpy and python RNG states as weights_only-loadable values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
