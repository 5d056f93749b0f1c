"""The house's import floors (docs/contributing.md "Layout"): every import in
ann/ points down a floor or stays inside its own package, and no two packages
(or modules) import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Higher floors may import lower ones, never the reverse. Packages on one floor
# may import each other only without a circle (checked below).
FLOORS: dict[str, int] = {
    "ann.commands": 5,
    "ann.api": 5,
    "ann.cli": 5,
    "ann.benchmarks": 4,
    "ann.hub": 4,
    "ann.summary": 4,
    "ann.engine": 3,
    "ann.evaluation": 2,
    "ann.config": 2,
    "ann.visualization": 2,
    "ann.convert": 2,
    "ann.models": 1,
    "ann.data": 1,
}
BASE = 0  # ann.errors, ann.dist, ann.speed, ...: everything not listed above
# Modules kept at an old path only to re-export a moved class: none (saved
# configs that name an old path are rewritten on load, ann/config/compat.py).
ALIASES: set[str] = set()
MAX_LINES = 400
# From the def line to the last one, docstring included (ast end_lineno - lineno + 1).
MAX_FUNCTION_LINES = 50


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(module: str) -> str:
    """'ann.engine.trainer' -> 'ann.engine'; a base module is its own package."""
    for package in FLOORS:
        if module == package or module.startswith(package + "."):
            return package
    return module


def _floor(module: str) -> int:
    return FLOORS.get(_package(module), BASE)


def _imports() -> dict[str, set[str]]:
    """module -> the ann modules it imports anywhere (also inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "ann").rglob("*.py")):
        name = _module_name(path)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("ann."))
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "ann":
                    targets.update(f"ann.{a.name}" for a in node.names)
                elif node.module.startswith("ann."):
                    targets.add(node.module)
        graph[name] = targets
    return graph


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle in a directed graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_nothing_imports_upward() -> None:
    upward = [
        f"{src} (floor {_floor(src)}) imports {dst} (floor {_floor(dst)})"
        for src, targets in _imports().items()
        if src not in ALIASES
        for dst in targets
        if _floor(dst) > _floor(src)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_circle() -> None:
    graph = {m: t for m, t in _imports().items() if m not in ALIASES}
    packages: dict[str, set[str]] = {}
    for src, targets in graph.items():
        for dst in targets:
            if _package(dst) != _package(src):
                packages.setdefault(_package(src), set()).add(_package(dst))
    assert _cycle(packages) is None, f"packages import in a circle: {_cycle(packages)}"
    # Inside a package too: importing a package runs its __init__ first.
    modules = {m: {t for t in ts if t in graph and t != m} for m, ts in graph.items()}
    assert _cycle(modules) is None, f"modules import in a circle: {_cycle(modules)}"


def test_engine_is_training_only() -> None:
    """No plotting, browsing, evaluation or prediction writing in ann/engine/."""
    engine = {p.stem for p in (ROOT / "ann" / "engine").glob("*.py")}
    assert engine <= {
        "__init__",
        "trainer",
        "checkpoint",
        "optim",
        "build",
        "signals",
        "run_dir",
        "hooks",
        "state",
    }, engine


def test_files_stay_small() -> None:
    long = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in sorted((ROOT / "ann").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, "\n".join(long)


def test_no_function_in_ann_is_longer_than_50_lines() -> None:
    """Functions and methods, nested ones too; a decorator line does not count."""
    long = [
        f"{p.relative_to(ROOT)}:{node.name}:{length}"
        for p in sorted((ROOT / "ann").rglob("*.py"))
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES
    ]
    assert not long, "\n".join(long)
