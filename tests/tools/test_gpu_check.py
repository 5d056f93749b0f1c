"""scripts/gpu_check.py without a GPU: its arguments, the pin list and the wheels
that must cover it, the `typing` guard, the install into a target folder and
the dry run.

Most tests call the script's functions in-process. The wheel folder is built
here, offline, by repacking the packages of this environment that
scripts/gpu-requirements.txt pins (same versions, this Python's binaries); the
slow test runs ``make gpu-wheels`` itself (it downloads) and the dry run
against what it fetched.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

from helpers import ROOT, run_bounded, tool_env


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses looks its module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load("gpu_check")
gpu_env = _load("gpu_env")
PINS = gpu_check.read_pins()


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    cmd = ["bash", str(ROOT / "scripts" / "gpu_check.sh"), *args]
    return run_bounded(cmd, timeout, env={**tool_env(), "PYTHON": sys.executable, **(env or {})})


def _repack(name: str, dest: Path) -> Path:
    """A wheel of the installed distribution ``name``, rebuilt from its RECORD."""
    dist = metadata.distribution(name)
    base = Path(dist.locate_file(""))
    wheel = dest / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for row in csv.reader(dist.read_text("RECORD").splitlines()):
            rel = row[0]
            if rel.startswith("..") or "__pycache__" in rel or not (base / rel).is_file():
                continue
            zf.write(base / rel, rel)
    return wheel


def _fake_wheel(dest: Path, name: str, files: dict[str, str], version: str = "1.0") -> Path:
    """A minimal wheel ``name``-``version`` holding ``files``."""
    info = f"{name}-{version}.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in {**files, f"{info}/RECORD": record}.items():
            zf.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def local_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned wheel set, repacked from this environment (no download)."""
    dest = tmp_path_factory.mktemp("wheels")
    for name in PINS:
        _repack(name, dest)
    return dest


def _summary(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    summary["status"] = {s["name"]: s["status"] for s in summary["steps"]}
    return summary


# -- arguments -----------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [((), ""), (("a", "b"), "one OUT_DIR only"), (("out", "--fast"), "unknown option --fast")],
    ids=["no_argument", "two_dirs", "unknown_option"],
)
def test_bad_arguments_exit_2_with_usage(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gpu_check.main(list(args)) == 2
    err = capsys.readouterr().err
    assert "usage: scripts/gpu_check.sh OUT_DIR [--dry-run]" in err
    assert message in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main(["--help"]) == 0
    assert "usage:" in capsys.readouterr().err


def test_options() -> None:
    opts = gpu_check.parse_args(["--skip-bench", "out", "--dry-run"])
    assert (opts.out, opts.dry_run, opts.tests, opts.bench) == (Path("out"), True, True, False)
    assert gpu_check.parse_args(["out", "--skip-tests"]).tests is False


# -- the pin list and the wheels ------------------------------------------------
def test_the_pin_list() -> None:
    assert PINS["hydra-core"] == "1.3.8" and PINS["antlr4-python3-runtime"] == "4.9.3"
    assert len(PINS) == 17 and "typing" not in PINS
    assert all(version and "=" not in version for version in PINS.values())


def test_a_line_that_is_no_pin_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "req.txt"
    path.write_text("# comment\n\nfoo==1.0  # why\nbar>=2\n")
    with pytest.raises(ValueError, match="req.txt:4: not name==version"):
        gpu_check.read_pins(path)
    path.write_text("Foo_Bar==1.0  # why\n")
    assert gpu_check.read_pins(path) == {"foo-bar": "1.0"}


def test_make_gpu_wheels_reads_the_pin_list() -> None:
    r = subprocess.run(["make", "-n", "gpu-wheels"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    reads = [line for line in r.stdout.splitlines() if "scripts/gpu-requirements.txt" in line]
    assert len(reads) == 2 and "pip download" in reads[0] and "pip wheel" in reads[1]


def test_the_wheels_must_cover_the_pins(tmp_path: Path) -> None:
    pins = {"foo-bar": "1.0", "baz": "2.0"}
    ok = _fake_wheel(tmp_path, "foo_bar", {})
    old = _fake_wheel(tmp_path, "baz", {}, version="1.9")
    extra = _fake_wheel(tmp_path, "other", {})
    chosen, problems = gpu_check.select_wheels([ok, old, extra], pins)
    assert chosen == [ok]
    assert problems == ["baz==2.0 not among the wheels (baz-1.9-py3-none-any.whl)"]
    new = _fake_wheel(tmp_path, "baz", {}, version="2.0")
    assert gpu_check.select_wheels([ok, old, new, extra], pins) == ([ok, new], [])


def test_the_pins_provide_every_module_the_check_wants(local_wheels: Path) -> None:
    chosen, problems = gpu_check.select_wheels(sorted(local_wheels.glob("*.whl")), PINS)
    assert problems == [] and len(chosen) == len(PINS)
    tops: set[str] = set()
    for wheel in chosen:
        with zipfile.ZipFile(wheel) as zf:
            tops |= {n.split("/")[0].split(".")[0] for n in zf.namelist() if ".dist-info" not in n}
    assert set(gpu_env.CARRIED) <= tops
    assert "typing" not in tops


# -- the typing guard and the install ------------------------------------------
def test_a_typing_wheel_is_refused(tmp_path: Path) -> None:
    """The `typing` backport on PYTHONPATH would shadow the standard library."""
    wheel = _fake_wheel(tmp_path, "typing", {"typing.py": "raise ImportError('the backport')\n"})
    _, problems = gpu_check.select_wheels([wheel], {"typing": "1.0"})
    assert problems == [f"{wheel.name}: the typing backport would shadow the standard library"]


def test_a_typing_module_in_the_target_folder_is_refused(tmp_path: Path) -> None:
    """A wheel of another name that brings a typing module: caught after the install."""
    wheels, site, lines = tmp_path / "wheels", tmp_path / "site", []
    wheels.mkdir()
    _fake_wheel(wheels, "sneaky", {"typing.py": "raise ImportError('the backport')\n"})
    rc = gpu_check.install_wheels(wheels, site, {"sneaky": "1.0"}, 60, lines.append)
    assert rc == 1 and (site / "typing.py").exists()
    assert any("would shadow the standard library" in line for line in lines)
    (site / "typing.py").unlink()
    assert not gpu_check.shadows_typing(site)
    (site / "typing").mkdir()
    assert gpu_check.shadows_typing(site)


def test_missing_wheels_stop_after_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"GPU_WHEELS": str(tmp_path / "none"), "GPU_SITE": str(tmp_path / "site")}
    out = tmp_path / "out"
    assert gpu_check.run_check(gpu_check.Options(out, dry_run=True), env) == 1
    assert "run 'make gpu-wheels'" in capsys.readouterr().out
    summary = _summary(out)
    assert summary["status"] == {"install": "failed"} and summary["ok"] is False
    assert summary["files"] == ["gpu_check.log", "summary.json"]


def test_a_spent_budget_starts_no_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {"GPU_WHEELS": str(tmp_path / "none"), "GPU_CHECK_BUDGET_S": "3"}
    assert gpu_check.run_check(gpu_check.Options(out, dry_run=True), env) == 1
    assert _summary(out)["status"] == {"install": "out_of_time"}


def test_a_step_past_its_limit_times_out(tmp_path: Path) -> None:
    lines: list[str] = []
    cmd = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
    rc = gpu_check.run_command(cmd, 1, lines.append, tool_env())
    assert rc == 124 and lines[0] == "started" and "timed out after 1s" in lines[-1]


# -- the dry run, through the shell wrapper -------------------------------------
def test_the_wrapper_passes_the_arguments_on() -> None:
    r = _run("a", "b")
    assert r.returncode == 2 and "one OUT_DIR only" in r.stderr


@pytest.mark.integration
def test_dry_run_installs_and_imports_from_the_target_folder(
    local_wheels: Path, tmp_path: Path
) -> None:
    site, out = tmp_path / "site", tmp_path / "out"
    r = _run(
        str(out),
        "--dry-run",
        "--skip-bench",
        env={"GPU_WHEELS": str(local_wheels), "GPU_SITE": str(site)},
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = _summary(out)
    assert summary["ok"] and summary["dry_run"]
    assert summary["status"] == {
        "install": "ok",
        "env": "ok",
        "cuda_tests": "ok",
        "bench": "skipped",
    }
    assert any("tests collected" in line for line in summary["steps"][2]["tail"])
    env_json = json.loads((out / "env.json").read_text())
    assert env_json["problems"] == []
    assert env_json["carried"]["hydra-core"] == PINS["hydra-core"]
    assert all(str(site) in origin for origin in env_json["origins"].values())
    assert not (site / "typing.py").exists()
    assert sorted(summary["files"]) == ["env.json", "gpu_check.log", "summary.json"]


@pytest.mark.slow
def test_make_gpu_wheels_then_dry_run(tmp_path: Path) -> None:
    """`make gpu-wheels` for real (it downloads), then the full dry run on it."""
    wheels = tmp_path / "wheels"
    r = subprocess.run(
        ["make", "-s", "gpu-wheels", f"GPU_WHEELS={wheels}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    names = sorted(p.name for p in wheels.glob("*.whl"))
    assert len(names) == len(PINS), names
    assert gpu_check.select_wheels(sorted(wheels.glob("*.whl")), PINS)[1] == []
    assert not any(n.lower().startswith("typing-") for n in names)
    binaries = [n for n in names if "-none-any" not in n]
    assert binaries and all("cp312-cp312-manylinux" in n for n in binaries), binaries
    assert sum(p.stat().st_size for p in wheels.iterdir()) < 32 * 2**20

    out = tmp_path / "out"
    env = {"GPU_WHEELS": str(wheels), "GPU_SITE": str(tmp_path / "site")}
    r = _run(str(out), "--dry-run", env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = _summary(out)
    assert summary["ok"]
    assert summary["status"] == dict.fromkeys(
        ["install", "env", "cuda_tests", "bench_train", "bench_infer"], "ok"
    )
    log = (out / "gpu_check.log").read_text()
    assert "would run: tools/benchmark.py train --device cuda" in log
