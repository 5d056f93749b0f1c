"""Resolved configs of every experiment and model for train, eval, infer and
export: the values tests/test_config_parts.py::test_resolved_configs_unchanged
holds the config files to, however they are organised.

``python tests/config_snapshot.py`` rewrites tests/data/resolved_configs.json;
run it only when a change to a resolved config is intended.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
SNAPSHOT = ROOT / "tests" / "data" / "resolved_configs.json"
ENTRY_CONFIGS = ("train", "eval", "infer", "export")


def resolved(cases: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """configs/<config_name>.yaml composed with the overrides of each
    (config_name, overrides) case, resolved to plain containers (the hydra
    node is not part of a composed config). One Hydra initialisation for all."""
    out = []
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for config_name, overrides in cases:
            cfg = compose(config_name=config_name, overrides=overrides)
            out.append(OmegaConf.to_container(cfg, resolve=True))
    return out


def snapshot_keys(experiments: list[str], models: list[str]) -> list[tuple[str, str, list[str]]]:
    """(key, entry config, overrides) for every experiment and model."""
    cases = [(f"experiment={e}", [f"experiment={e}"]) for e in experiments]
    cases += [(f"model={m}", [f"model={m}"]) for m in models]
    return [(f"{c}|{label}", c, ov) for c in ENTRY_CONFIGS for label, ov in cases]


def main() -> None:
    experiments = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
    models = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
    keys = snapshot_keys(experiments, models)
    configs = resolved([(c, ov) for _, c, ov in keys])
    out = {key: cfg for (key, _, _), cfg in zip(keys, configs, strict=True)}
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{len(out)} configs -> {SNAPSHOT}", file=sys.stderr)


if __name__ == "__main__":
    main()
