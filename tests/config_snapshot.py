"""Resolved configs of every experiment and model for train, eval, infer and
export: the values tests/models/test_config_parts.py::test_resolved_configs_unchanged
holds the config files to, however they are organised.

``python tests/config_snapshot.py`` rewrites tests/snapshots/resolved_configs.json;
run it only when a change to a resolved config is intended.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from omegaconf import OmegaConf

from helpers import CONFIG_DIR, ROOT, compose_cfg

SNAPSHOT = ROOT / "tests" / "snapshots" / "resolved_configs.json"
ENTRY_CONFIGS = ("train", "eval", "infer", "export")


def resolved(cases: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """configs/<config_name>.yaml composed with the overrides of each
    (config_name, overrides) case, resolved to plain containers (the hydra
    node is not part of a composed config)."""
    return [
        OmegaConf.to_container(compose_cfg(overrides, config_name), resolve=True)
        for config_name, overrides in cases
    ]


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
