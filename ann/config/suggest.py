"""Hydra's composition errors as one line with a "did you mean".

Hydra answers a mistyped experiment with a page (every option, the search
path, a HYDRA_FULL_ERROR hint) and a mistyped key with a struct error. These
functions turn each into one :class:`~ann.errors.ConfigError` line that names
the override, what was expected and the closest valid names: options from the
configs tree for a group, sibling (and same-named) keys for a key.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ann.errors import ConfigError

# Shown in full when a group has at most this many options; else only the
# close matches (the experiment group has two dozen).
_LIST_ALL = 8


def group_options(config_dir: Path, group: str) -> list[str]:
    """The option names of config group ``group`` (``model/backbone`` for a
    nested one): its YAML files. A subfolder is a group of its own
    (``model/backbone``), except under ``experiment``, whose subfolders hold
    experiments (``ablation/cs_r101_apnb``)."""
    root = config_dir / group
    files = root.rglob("*.yaml") if group == "experiment" else root.glob("*.yaml")
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in files)


def config_groups(config_dir: Path) -> list[str]:
    """Every group folder of the configs tree (``model``, ``model/backbone``, ...),
    except Hydra's own and the subfolders that hold options (ablation/)."""
    groups = []
    for path in sorted(config_dir.rglob("*")):
        rel = path.relative_to(config_dir)
        if not path.is_dir() or rel.parts[0] == "hydra":
            continue
        if rel.parts[0] == "experiment" and len(rel.parts) > 1:
            continue
        groups.append(rel.as_posix())
    return groups


def key_paths(cfg: DictConfig) -> list[str]:
    """Every dotted key of ``cfg``, nodes and leaves (``trainer``, ``trainer.max_iters``)."""
    paths: list[str] = []

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                path = f"{prefix}{key}"
                paths.append(path)
                walk(value, path + ".")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return paths


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates that look like ``word``: those with the same
    last component first (``trainer.num_workers`` -> ``evaluator.num_workers``),
    then the most similar ones (within 0.05 of the best similarity, so that a
    clear winner stands alone)."""
    candidates = [c for c in dict.fromkeys(candidates) if c != word]
    leaf = word.rsplit(".", 1)[-1]
    same_leaf = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf]
    if same_leaf:
        return same_leaf[:n]
    scored = sorted(
        ((difflib.SequenceMatcher(None, word, c).ratio(), c) for c in candidates), reverse=True
    )
    best = scored[0][0] if scored else 0.0
    similar = [c for ratio, c in scored if ratio >= max(0.6, best - 0.05)]
    return similar[:n]


def _did_you_mean(matches: Sequence[str]) -> str:
    return f"; did you mean {' or '.join(matches)}?" if matches else ""


def unknown_option(group: str, name: str, options: Sequence[str], hint: str = "") -> ConfigError:
    """``experiment=cityscapes_annn`` -> one line naming the closest options."""
    matches = close_matches(name, options)
    line = f"{group}={name}: no such {group} option{_did_you_mean(matches)}"
    if len(options) <= _LIST_ALL:
        line += f" (options: {', '.join(options)})"
    elif hint:
        line += f" ({hint})"
    return ConfigError(line)


def unknown_key(key: str, known: Sequence[str]) -> ConfigError:
    """``trainer.max_itres=5`` -> one line naming the closest existing keys."""
    matches = close_matches(key, known)
    return ConfigError(
        f"{key}: no such config key{_did_you_mean(matches)}"
        f" (to add a new key on purpose: +{key}=VALUE)"
    )


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("~+")


def explain(
    exc: Exception,
    overrides: Sequence[str],
    config_dir: Path,
    compose_without: Callable[[list[str]], DictConfig],
    hint: str = "",
) -> ConfigError:
    """The one-line error for a Hydra composition exception ``exc``.

    ``compose_without(overrides)`` composes the same config with the given
    overrides, to list the keys that do exist once the bad override is left
    out; ``hint`` says where the options are listed (a tool's --help).
    """
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file:
        missing = str(exc.missing_cfg_file)
        given = [o.lstrip("+~").split("=", 1) for o in overrides if "=" in o]
        named = [(k, v) for k, v in given if f"{k}/{v}" == missing]
        group, name = named[0] if named else missing.rpartition("/")[::2]
        if group:
            options = group_options(config_dir, group) or list(exc.options or [])
            return unknown_option(group, name, options, hint)
    if isinstance(exc, OverrideParseException):
        return ConfigError(f"cannot parse the command line: {first} (Hydra's override grammar)")
    if isinstance(exc, ConfigCompositionException) and first.startswith("Could not override '"):
        key = first.split("'")[1]
        rest = [o for o in overrides if _override_key(o) != key]
        try:
            known = key_paths(compose_without(rest))
        except Exception:  # noqa: BLE001 - another bad override: no suggestions then
            known = []
        groups = [g for g in config_groups(config_dir) if "/" not in g]
        return unknown_key(key, known + groups)
    cause = exc.__cause__
    detail = str(cause).strip().splitlines()[0] if cause and str(cause).strip() else ""
    return ConfigError(f"{first} {detail}".strip())


def missing_keys(cfg: DictConfig, keys: Sequence[str]) -> list[str]:
    """Those of ``keys`` that the composed ``cfg`` leaves as ``???``."""
    # ``key in cfg`` is False for a ??? value: ask the keys instead.
    return [k for k in keys if k in cfg.keys() and OmegaConf.is_missing(cfg, k)]


__all__ = [
    "close_matches",
    "config_groups",
    "explain",
    "group_options",
    "key_paths",
    "missing_keys",
    "unknown_key",
    "unknown_option",
]
