"""Validation of the heads' string and list options, at construction time.

Kept apart from the attention math so that every head (and the config
schema) can check an option without importing the blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from ann.errors import ConfigError

ATTENTION_IMPLS = ("sdpa", "matmul")
# The paper's f of the similarity map (Sec. 3): softmax is what ANN uses;
# rescale divides by the number of anchors S (the non-local paper's
# "dot product" form), none leaves the similarity as it is.
NORMALIZATIONS = ("softmax", "rescale", "none")
# Y = fuse(cat[Wo(O), X]) (ANN) or the residual Y = Wo(O) + X.
OUTPUTS = ("concat", "residual")


def check_choice(key: str, value: str, choices: Sequence[str]) -> str:
    """Validates a string option (``normalization``, ``output``, ...): returns
    ``value``, or raises a ConfigError naming the key and the choices."""
    if value not in choices:
        raise ConfigError(f"{key} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_impl(impl: str) -> str:
    """Validates an ``attention`` option (:data:`ATTENTION_IMPLS`)."""
    return check_choice("attention", impl, ATTENTION_IMPLS)


def check_pool_sizes(sizes: Sequence[int] | None, key: str = "pool_sizes") -> tuple[int, ...]:
    """Validates pyramid sizes: a non-empty list of positive integers."""
    if sizes is None or isinstance(sizes, (str, int)) or len(sizes) == 0:
        raise ConfigError(
            f"{key} must be a non-empty list of sizes, e.g. [1, 3, 6, 8]; got {sizes!r}"
        )
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
        raise ConfigError(f"{key} must hold integers >= 1, got {list(sizes)!r}")
    return tuple(sizes)


def check_probability(key: str, p: float) -> float:
    """Validates a dropout probability: a number in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ConfigError(f"{key} must be a probability in [0, 1), got {p!r}")
    return float(p)


def num_anchors(sizes: Sequence[int]) -> int:
    """S = sum(n * n): the number of sampled keys/values of a pyramid."""
    return sum(s * s for s in sizes)
