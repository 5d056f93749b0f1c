"""The documentation runs as printed: every Hydra command line in README.md
and docs/*.md composes (and passes the start-up schema check), every tool
the docs name answers ``--help``, and README's Python snippets execute.

A failure names the file and line of the documentation that drifted.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import runpy
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ann.cli import quote_path_values
from ann.config.schema import TOP_GROUPS, check_config
from helpers import CONFIG_DIR, ROOT, compose_cfg

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# tools/<tool>.py -> its config in configs/ (the tools' @hydra.main config_name)
HYDRA_TOOLS = {
    "train": "train",
    "eval": "eval",
    "infer": "infer",
    "export": "export",
    "browse_dataset": "browse",
}
# What the start-up check covers per entry config: training checks every
# group (ann/engine/trainer.py); the other tools compose configs/base.yaml's
# groups only (no trainer, optimizer, scheduler), and those are checked.
BASE_GROUPS = ("model", "dataset", "evaluator")
CHECKED_GROUPS = {"train": TOP_GROUPS}
TOOL_RE = re.compile(r"(?:^|/)tools/(\w+)\.py$")
# A tool the docs name: tools/<tool>.py, not a test file of tests/tools/.
TOOL_NAMED = r"\b(?<!tests/)tools/(\w+)\.py"
# Placeholders the docs use for "your value here" that would not compose as
# they are; any other placeholder (PATH, /data/...) is a plain string already.
PLACEHOLDERS = {"experiment=EXPERIMENT": "experiment=cityscapes_ann"}
# The block tests/tools/test_api.py runs as printed (it needs a trained checkpoint).
API_BLOCK_MARK = "from ann import Segmenter"


@dataclass(frozen=True)
class Snippet:
    """A piece of a doc: its file, first line (1-based) and text."""

    path: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _code_lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, fence language or None for an indented block) of
    each line inside a code block."""
    lang: str | None = None
    in_fence = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence = not in_fence
            lang = (stripped[3:].strip() or "") if in_fence else None
            continue
        if in_fence:
            yield number, line, lang
        elif line.startswith("    ") and stripped:
            yield number, line, None


def command_lines() -> list[Snippet]:
    """Every shell command in a code block of the docs, continuation lines
    (ending in a backslash) joined."""
    found = []
    for path in DOCS:
        pending: Snippet | None = None
        for number, line, _ in _code_lines(path):
            text = line.strip()
            if pending is not None:
                pending = Snippet(path, pending.line, pending.text + " " + text.rstrip("\\"))
            elif re.search(rf"{TOOL_NAMED}|\bscripts/\w+\.(py|sh)", text):
                pending = Snippet(path, number, text.rstrip("\\"))
            if pending is not None and not text.endswith("\\"):
                found.append(pending)
                pending = None
    return found


def hydra_command(snippet: Snippet) -> tuple[str, bool, list[str]] | None:
    """(config name, multirun, overrides) of a line that runs a Hydra tool
    (directly, behind torchrun or through scripts/dist_train.sh), else None."""
    words = shlex.split(snippet.text, comments=True)
    for i, word in enumerate(words):
        match = TOOL_RE.search(word)
        if match and match.group(1) in HYDRA_TOOLS:
            config, rest = HYDRA_TOOLS[match.group(1)], words[i + 1 :]
            break
        if word.endswith("scripts/dist_train.sh"):
            config, rest = "train", words[i + 2 :]  # after the process count
            break
    else:
        return None
    multirun = bool({"-m", "--multirun"} & set(rest))
    overrides = [PLACEHOLDERS.get(w, w) for w in rest if w not in ("-m", "--multirun")]
    # as the tools do before Hydra parses argv: a path value may hold "="
    return config, multirun, quote_path_values(overrides)


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists to compose for a line. A ``-m`` sweep composes its
    first job; each further value of a config-group sweep
    (``experiment=a,b,c``) must at least name a file in that group, each
    further value of a key sweep (``trainer.seed=0,1,2``) is composed on its
    own with the other overrides at their first value."""
    parsed = OverridesParser.create().parse_overrides(overrides)  # grammar errors here
    if not multirun:
        return [overrides]
    first = []
    for override in parsed:
        if override.is_sweep_override():
            key = override.input_line.split("=", 1)[0]
            first.append(f"{key}={next(iter(override.sweep_string_iterator()))}")
        else:
            first.append(override.input_line)
    jobs = [first]
    for i, override in enumerate(parsed):
        if not override.is_sweep_override():
            continue
        key = override.input_line.split("=", 1)[0]
        for value in list(override.sweep_string_iterator())[1:]:
            group = CONFIG_DIR / key.lstrip("+~")
            if not group.is_dir():
                jobs.append([*first[:i], f"{key}={value}", *first[i + 1 :]])
            elif not (group / f"{value}.yaml").is_file():
                raise ValueError(f"{key}={value}: no {group.relative_to(ROOT)}/{value}.yaml")
    return jobs


def _cache_key(config: str, job: list[str]) -> tuple[str, ...]:
    """Lines that differ only in a file or folder name compose alike: one
    composition stands for them (the names are plain strings to Hydra)."""
    names = [re.sub(r"^((?:checkpoint|dataset\.root|input|output_dir)=).*", r"\1X", o) for o in job]
    return (config, *names)


HYDRA_LINES = [s for s in command_lines() if hydra_command(s) is not None]


def test_the_docs_have_command_lines() -> None:
    """Guards the extraction itself: a change in the docs' markup that hid
    every line would otherwise pass."""
    assert len(HYDRA_LINES) >= 40, [s.where for s in HYDRA_LINES]
    tools = {hydra_command(s)[0] for s in HYDRA_LINES}
    assert {"train", "eval", "infer", "export"} <= tools


def test_every_hydra_command_line_composes() -> None:
    """``--cfg job`` for each line, in-process: the entry config composed with
    the line's overrides (each job of a ``-m`` sweep), resolved and checked
    against the start-up schema as the tool would before reading any data."""
    failures, done = [], set()
    for snippet in HYDRA_LINES:
        config, multirun, overrides = hydra_command(snippet)
        try:
            for job in _jobs(overrides, multirun):
                if _cache_key(config, job) in done:
                    continue
                done.add(_cache_key(config, job))
                cfg = compose_cfg(job, config)
                OmegaConf.to_container(cfg, resolve=True)
                check_config(cfg, CHECKED_GROUPS.get(config, BASE_GROUPS))
        except Exception as e:  # every failure is reported
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            failures.append(f"{snippet.where}: {type(e).__name__}: {first}\n  {snippet.text}")
    assert not failures, "\n".join(failures)


def _named(pattern: str) -> list[str]:
    """The distinct matches of ``pattern`` anywhere in the docs, sorted."""
    return sorted({m for p in DOCS for m in re.findall(pattern, p.read_text())})


def _script_main(name: str, monkeypatch: pytest.MonkeyPatch) -> Callable:
    spec = importlib.util.spec_from_file_location(f"docs_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # registered while the test runs: dataclasses look their module up there
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module.main


def _exit_code(call: Callable[[], int | None]) -> int:
    """The exit status of an argparse-style main: its return value or SystemExit's code."""
    try:
        code = call()
    except SystemExit as e:
        code = e.code
    return 0 if code is None else int(code)


# The tools that are not Hydra apps and the scripts the docs name, each
# asked for --help in-process (argparse prints and exits 0).
NON_HYDRA_TOOLS = [t for t in _named(TOOL_NAMED) if t not in HYDRA_TOOLS]
# gpu_env.py is a step that scripts/gpu_check.py runs in a process of its
# own (arguments from gpu_check), not a command for users.
INTERNAL_SCRIPTS = {"gpu_env"}
SCRIPTS = [s for s in _named(r"\bscripts/(\w+)\.py") if s not in INTERNAL_SCRIPTS]
# `tools/benchmark.py heads ...` and `tools/benchmark.py {heads,model,...}`;
# SUBCOMMAND in capitals is a placeholder.
BENCHMARKS = sorted(
    {b for m in _named(r"tools/benchmark\.py\s+\{([\w,]+)\}") for b in m.split(",")}
    | set(_named(r"tools/benchmark\.py\s+([a-z]\w*)"))
)


@pytest.mark.parametrize("tool", NON_HYDRA_TOOLS)
def test_tool_help(tool: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"ann.commands.{tool}").main
    assert _exit_code(lambda: main(["--help"])) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("subcommand", BENCHMARKS)
def test_benchmark_subcommand_help(subcommand: str, capsys: pytest.CaptureFixture[str]) -> None:
    from ann.commands.benchmark import main

    assert _exit_code(lambda: main([subcommand, "--help"])) == 0, capsys.readouterr().err
    assert "usage" in capsys.readouterr().out


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(
    script: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    main = _script_main(script, monkeypatch)
    monkeypatch.setattr(sys, "argv", [f"scripts/{script}.py", "--help"])  # main() reads argv
    takes_argv = main.__code__.co_argcount > 0
    code = _exit_code(lambda: main(["--help"]) if takes_argv else main())
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "usage" in (out + err).lower()  # gpu_check prints its usage to stderr


@pytest.mark.parametrize("tool", [t for t in _named(TOOL_NAMED) if t in HYDRA_TOOLS])
def test_hydra_tool_help(
    tool: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry point run as ``python tools/<tool>.py --help``, in-process:
    as ``__main__``, so that Hydra finds ../configs from the file as it does
    for a user (it prints the config groups and exits 0); Hydra's state is
    cleared after."""
    path = str(ROOT / "tools" / f"{tool}.py")
    monkeypatch.setattr(sys, "argv", [path, "--help"])
    try:
        assert _exit_code(lambda: runpy.run_path(path, run_name="__main__")) == 0
    finally:
        GlobalHydra.instance().clear()
    assert "experiment" in capsys.readouterr().out


def python_blocks() -> list[Snippet]:
    """The ```python blocks of the docs, but the one tests/tools/test_api.py runs."""
    blocks: list[Snippet] = []
    for path in DOCS:
        current: list[str] = []
        start = previous = 0
        for number, line, lang in _code_lines(path):
            if lang != "python":
                continue
            if current and number != previous + 1:
                blocks.append(Snippet(path, start, "\n".join(current)))
                current = []
            if not current:
                start = number
            current.append(line)
            previous = number
        if current:
            blocks.append(Snippet(path, start, "\n".join(current)))
    return [b for b in blocks if API_BLOCK_MARK not in b.text]


PYTHON_BLOCKS = python_blocks()


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.where for b in PYTHON_BLOCKS])
def test_python_snippet_runs(
    block: Snippet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs in an empty folder, so that a snippet cannot lean on files of
    the checkout (outputs/, data/)."""
    monkeypatch.chdir(tmp_path)
    code = compile(block.text, block.where, "exec")
    exec(code, {"__name__": "__docs__"})  # the docs' own code


def test_no_doc_cites_a_file_outside_the_repository() -> None:
    """Every relative Markdown link points at a file of the checkout."""
    missing = []
    for path in DOCS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", line):
                if "://" in target or target.startswith("mailto:"):
                    continue
                if not (path.parent / target).exists():
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {target}")
    assert not missing, "\n".join(missing)
