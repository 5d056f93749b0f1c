"""scripts/gpu_check.sh without a GPU: its arguments, the install of a wheel
folder into a target folder, the import check and the dry run.

The default tests build their wheel folder here, offline, by repacking the
packages of this environment that ``make gpu-wheels`` names (same versions,
this Python's binaries); the slow test runs ``make gpu-wheels`` itself (it
downloads) and the dry run against what it fetched.
"""

from __future__ import annotations

import ast
import csv
import json
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from helpers import ROOT, run_bounded, tool_env

SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return run_bounded(["bash", str(SCRIPT), *args], timeout, env={**tool_env(), **(env or {})})


def _gpu_pins() -> list[str]:
    """The distribution names ``make gpu-wheels`` fetches, as the Makefile lists them."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    pins = re.search(r"^GPU_PINS := (.*)$", text, re.M).group(1).split()
    return [p.split("==")[0] for p in pins] + ["antlr4-python3-runtime"]


def _carried_modules() -> list[str]:
    """The top-level modules the script's import check wants from the target folder."""
    text = SCRIPT.read_text()
    return ast.literal_eval(re.search(r"^carried = (\[.*?\])", text, re.M | re.S).group(1))


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


def _fake_wheel(dest: Path, name: str, files: dict[str, str]) -> Path:
    """A minimal wheel ``name``-1.0 holding ``files``."""
    info = f"{name}-1.0.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    wheel = dest / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in {**files, f"{info}/RECORD": record}.items():
            zf.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def local_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gpu-wheels set, repacked from this environment (no download)."""
    dest = tmp_path_factory.mktemp("wheels")
    for name in _gpu_pins():
        _repack(name, dest)
    return dest


def _summary(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    summary["status"] = {s["name"]: s["status"] for s in summary["steps"]}
    return summary


@pytest.mark.parametrize(
    "args, message",
    [
        ((), ""),
        (("a", "b"), "one OUT_DIR only"),
        (("out", "--fast"), "unknown option --fast"),
    ],
    ids=["no_argument", "two_dirs", "unknown_option"],
)
def test_bad_arguments_exit_2_with_usage(args: tuple[str, ...], message: str) -> None:
    r = _run(*args)
    assert r.returncode == 2
    assert "usage: scripts/gpu_check.sh OUT_DIR [--dry-run]" in r.stderr
    assert message in r.stderr


def test_help_exits_0() -> None:
    r = _run("--help")
    assert r.returncode == 0 and "usage:" in r.stderr


def test_missing_wheels_stop_after_install(tmp_path: Path) -> None:
    env = {"GPU_WHEELS": str(tmp_path / "none"), "GPU_SITE": str(tmp_path / "site")}
    r = _run(str(tmp_path / "out"), "--dry-run", env={**env, "PYTHON": sys.executable})
    assert r.returncode == 1
    assert "run 'make gpu-wheels'" in r.stdout
    summary = _summary(tmp_path / "out")
    assert summary["status"] == {"install": "failed"} and summary["ok"] is False


def test_a_typing_backport_is_refused(tmp_path: Path) -> None:
    """The `typing` backport in the target folder would shadow the standard library."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _fake_wheel(wheels, "typing", {"typing.py": "raise ImportError('the backport')\n"})
    env = {"GPU_WHEELS": str(wheels), "GPU_SITE": str(tmp_path / "site"), "PYTHON": sys.executable}
    r = _run(str(tmp_path / "out"), "--dry-run", env=env)
    assert r.returncode == 1
    assert "would shadow the standard library" in r.stdout
    assert _summary(tmp_path / "out")["status"] == {"install": "failed"}


def test_the_pins_provide_every_module_the_check_wants(local_wheels: Path) -> None:
    tops: set[str] = set()
    for wheel in local_wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            tops |= {n.split("/")[0].split(".")[0] for n in zf.namelist() if ".dist-info" not in n}
    assert set(_carried_modules()) <= tops
    assert "typing" not in tops


def test_dry_run_installs_and_imports_from_the_target_folder(
    local_wheels: Path, tmp_path: Path
) -> None:
    site, out = tmp_path / "site", tmp_path / "out"
    env = {"GPU_WHEELS": str(local_wheels), "GPU_SITE": str(site), "PYTHON": sys.executable}
    r = _run(str(out), "--dry-run", "--skip-bench", env=env)
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
    assert env_json["carried"]["hydra-core"] == metadata.version("hydra-core")
    assert all(str(site) in origin for origin in env_json["origins"].values())
    assert not (site / "typing.py").exists()
    assert sorted(summary["files"]) == ["env.json", "gpu_check.log", "summary.json"]


@pytest.mark.slow
def test_make_gpu_wheels_then_dry_run(tmp_path: Path) -> None:
    """`make gpu-wheels` for real (it downloads), then the full dry run on it."""
    wheels = tmp_path / "wheels"
    r = subprocess.run(
        ["make", "-s", "gpu-wheels", f"GPU_WHEELS={wheels}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    names = sorted(p.name for p in wheels.glob("*.whl"))
    assert len(names) == len(_gpu_pins()), names
    assert not any(n.lower().startswith("typing-") for n in names)
    binaries = [n for n in names if "-none-any" not in n]
    assert binaries and all("cp312-cp312-manylinux" in n for n in binaries), binaries
    assert sum(p.stat().st_size for p in wheels.iterdir()) < 32 * 2**20

    out = tmp_path / "out"
    env = {"GPU_WHEELS": str(wheels), "GPU_SITE": str(tmp_path / "site"), "PYTHON": sys.executable}
    r = _run(str(out), "--dry-run", env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = _summary(out)
    assert summary["ok"]
    assert summary["status"] == dict.fromkeys(
        ["install", "env", "cuda_tests", "bench_train", "bench_infer"], "ok"
    )
    assert (
        "would run: tools/benchmark.py train --device cuda" in (out / "gpu_check.log").read_text()
    )
