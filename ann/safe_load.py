"""``torch.load`` with ``weights_only=True`` and a plain message for files that hold code."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ann.errors import UnreadableCheckpointError, UnsafeCheckpointError

# torch names the first refused global: "unsupported GLOBAL posix.system" or
# "Unsupported global: GLOBAL builtins.exec".
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_tensors(path: str | Path, key: str, map_location: str | torch.device = "cpu") -> Any:
    """Loads ``path`` with ``weights_only=True`` (tensors, containers, numbers,
    strings only). Raises an error with one line naming ``key`` (the config
    key or argument that named the file) and the file: a file that holds other
    Python objects is refused for safety (:class:`UnsafeCheckpointError`), one
    that torch cannot read at all is :class:`UnreadableCheckpointError`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found is None:  # not a pickle at all, or a damaged one
            detail = [ln for ln in str(exc).splitlines() if ln.strip()]
            reason = next((ln for ln in detail if "Unsupported" in ln), detail[0] if detail else "")
            raise UnreadableCheckpointError(
                f"{key}: {path} is not a readable weights file ({reason.strip()})"
            ) from None
        raise UnsafeCheckpointError(
            f"{key}: {path} holds Python objects besides tensors (e.g. {found.group(1)}), "
            "which could run code when loaded; it was not loaded, for safety. Use a file that holds only tensors "
            "(a state dict, or a checkpoint written by this framework), or re-save its "
            "tensors from trusted code with torch.save(model.state_dict(), path)"
        ) from None
    except Exception as exc:  # zip, EOF and torch errors all mean "unreadable"
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise UnreadableCheckpointError(
            f"{key}: {path} is not a readable weights file ({first})"
        ) from None
