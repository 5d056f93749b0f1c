"""Where the configs live, and composing them outside a Hydra entry point.

The tools name ``../configs`` relative to their own file; a library caller
(:mod:`ann.api`, a notebook) has no such anchor and may run in any folder, so
the configs are found from the installed package instead: ``ann/config_tree``
(a link to the repository's ``configs/`` in a checkout, the copied files in
a wheel, see pyproject.toml's package data).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ann.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """The absolute path of the configs folder (holding train.yaml, eval.yaml, ...),
    whatever the current working directory."""
    # The link inside the package first (wheel and editable installs); the
    # checkout's own configs/ if a copy of the tree lost the link.
    for candidate in (_PACKAGE / "config_tree", _PACKAGE.parent / "configs"):
        if (candidate / "train.yaml").is_file():
            return candidate.resolve()
    raise ConfigError(
        f"no configs folder found next to the ann package ({_PACKAGE}/config_tree or "
        f"{_PACKAGE.parent}/configs); reinstall the package"
    )


def compose(
    config_name: str = "train", overrides: Sequence[str] = (), hint: str = ""
) -> DictConfig:
    """Composes ``configs/<config_name>.yaml`` with command-line style
    ``overrides`` (``["experiment=demo", "trainer.max_iters=10"]``), as the
    tools do but without Hydra's run directory, logging or working directory
    changes. Interpolations are left unresolved, as the tools see them.

    A mistyped group option or key raises a one-line :class:`ConfigError`
    with the closest valid names (``hint``: where the options are listed).
    """
    from hydra.errors import HydraException

    from ann.config.suggest import explain

    try:
        return _compose(config_name, overrides)
    except HydraException as exc:
        raise explain(
            exc, list(overrides), config_dir(), lambda ovs: _compose(config_name, ovs), hint
        ) from None


def _compose(config_name: str, overrides: Sequence[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    # Inside a running Hydra app (a tool, a notebook that composed already)
    # initialize_config_dir refuses to start: set that state aside and put it
    # back afterwards, so the caller's Hydra is left as it was.
    outer = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    finally:
        restore_gh_from_backup(outer)


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """``cfg`` (a saved, resolved config) with command-line style ``overrides``
    applied as the tools apply them: a key that does not exist is a one-line
    :class:`ConfigError` naming the closest keys (``+key=value`` adds one on
    purpose), and values are parsed as YAML (``flip=true`` is a bool)."""
    from ann.config.suggest import key_paths, unknown_key

    cfg = cfg.copy()
    known = set(key_paths(cfg))
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep:
            raise ConfigError(f"{override!r}: expected key=value")
        if not key.startswith("+") and key not in known:
            raise unknown_key(key, sorted(known))
        parsed = OmegaConf.from_dotlist([f"{key.lstrip('+')}={override.partition('=')[2]}"])
        cfg = OmegaConf.merge(cfg, parsed)
    return cfg
