"""COCO run-length encoded (RLE) binary masks, decoded without pycocotools.

An RLE is ``{"size": [h, w], "counts": ...}``: run lengths of alternating 0s
and 1s (zeros first) over the mask flattened in column-major order. ``counts``
is a list of ints (uncompressed) or a string (compressed, as COCO and the
PASCAL in Detail annotations store it): each count as 5-bit groups, least
significant first, each group + 48 as one character, bit 0x20 meaning "more
groups follow" and bit 0x10 of the last group the sign; from the fourth count
on, the value stored is the difference to the count two places before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class RLEError(ValueError):
    """The RLE is malformed: bad characters, negative runs, or runs that do not fill the mask."""


def string_to_counts(counts: str | bytes) -> np.ndarray:
    """Run lengths of a compressed COCO RLE string: (m,) int64."""
    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    chars = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if chars.size == 0:
        return np.zeros(0, dtype=np.int64)
    if chars.min() < 0 or chars.max() > 63:
        raise RLEError("compressed counts hold characters outside '0'..'o'")
    last = (chars & 0x20) == 0  # a group without the "more" bit ends a value
    if not last[-1]:
        raise RLEError("compressed counts end in the middle of a value")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    # Position of each character inside its value: its 5-bit group index.
    group = np.arange(chars.size) - np.repeat(starts, ends - starts + 1)
    if group.max() > 11:  # more than 60 bits: not a run length of any image
        raise RLEError("compressed counts hold a value longer than 12 characters")
    values = np.add.reduceat((chars & 0x1F) << (5 * group), starts)
    # The last group's 0x10 bit sign-extends the value (two's complement).
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (group[ends[negative]] + 1))
    # From the fourth count on, each is stored relative to the one two before,
    # so the even and the odd counts from index 1 and 2 on are running sums.
    out = values.copy()
    out[1::2] = np.cumsum(values[1::2])
    out[2::2] = np.cumsum(values[2::2])
    return out


def decode(rle: Mapping[str, Any]) -> np.ndarray:
    """(h, w) bool mask of a COCO RLE dict with compressed or uncompressed counts."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise RLEError("expected {'size': [h, w], 'counts': ...}") from None
    if isinstance(counts, str | bytes):
        runs = string_to_counts(counts)
    elif isinstance(counts, list) and all(isinstance(c, int) for c in counts):
        runs = np.asarray(counts, dtype=np.int64)
    else:
        raise RLEError("counts must be a compressed string or a list of ints")
    if height < 0 or width < 0:
        raise RLEError(f"negative size {[height, width]}")
    if runs.size and runs.min() < 0:
        raise RLEError("negative run length")
    if int(runs.sum()) != height * width:
        raise RLEError(
            f"runs cover {int(runs.sum())} pixels, size {[height, width]} has {height * width}"
        )
    flat = np.repeat((np.arange(runs.size) % 2).astype(bool), runs)
    return flat.reshape((width, height)).T
