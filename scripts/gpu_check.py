"""The GPU check (docs/gpu_check.md); ``bash scripts/gpu_check.sh`` runs it.

On a CUDA machine whose image has PyTorch and the rest but not Hydra,
albumentations or cityscapesscripts, in at most about 8 minutes: **install**
the wheels of ``make gpu-wheels`` pinned in scripts/gpu-requirements.txt into a
target folder (no index, no dependency resolution); **env** (scripts/gpu_env.py):
import check from that folder, the machine → env.json; **cuda_tests**: ``pytest
-m cuda`` → cuda_tests.xml; **bench_***: the train and infer benchmarks →
bench_*.json. Every step's status, time and output tail → summary.json, all
the output → gpu_check.log, all in OUT_DIR.

Usage: gpu_check.py OUT_DIR [--dry-run] [--skip-tests] [--skip-bench]
Environment: GPU_WHEELS, GPU_SITE, GPU_CHECK_BUDGET_S, GPU_CHECK_FAST_SET.
Exit status: 0 all steps passed, 1 a step failed or timed out, 2 bad usage.
Only the standard library: it runs before the carried packages are installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parents[1]
REQUIREMENTS = REPO / "scripts" / "gpu-requirements.txt"
USAGE = "usage: scripts/gpu_check.sh OUT_DIR [--dry-run] [--skip-tests] [--skip-bench]"
TAIL_LINES = 40
# The wheels are for the GPU image's Python 3.12 on x86-64 whatever runs the
# install (a dry run elsewhere may be another Python): pip installs for that.
PLATFORM = (
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--abi",
    "cp312",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
    "--only-binary=:all:",
)

Emit = Callable[[str], None]


class UsageError(Exception):
    """Bad command line: main prints it with the usage and exits 2."""


@dataclass
class Options:
    """The command line."""

    out: Path
    dry_run: bool = False
    tests: bool = True
    bench: bool = True


def parse_args(argv: Sequence[str]) -> Options | None:
    """The options of ``argv``; None for --help. Raises UsageError."""
    out: str | None = None
    flags = {"--dry-run": False, "--skip-tests": False, "--skip-bench": False}
    for arg in argv:
        if arg in ("-h", "--help"):
            return None
        if arg in flags:
            flags[arg] = True
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg}")
        elif out is not None:
            raise UsageError(f"one OUT_DIR only, got {out} and {arg}")
        else:
            out = arg
    if out is None:
        raise UsageError("")
    tests, bench = not flags["--skip-tests"], not flags["--skip-bench"]
    return Options(Path(out), flags["--dry-run"], tests, bench)


# -- the pin list and the wheels ------------------------------------------------
def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """``{normalized name: version}`` of the ``name==version`` lines of ``path``."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"{path}:{number}: not name==version: {line!r}")
        pins[normalize(name.strip())] = version.strip()
    return pins


def wheel_pin(wheel: Path) -> tuple[str, str]:
    """``(normalized name, version)`` from a wheel's file name."""
    name, version = wheel.name.removesuffix(".whl").split("-")[:2]
    return normalize(name), version


def select_wheels(wheels: Sequence[Path], pins: Mapping[str, str]) -> tuple[list[Path], list[str]]:
    """The wheels that provide ``pins`` and the problems that stop the install:
    a ``typing`` wheel, a pin without its wheel. Other wheels are left out."""
    chosen, problems = [], []
    found = {}
    for wheel in sorted(wheels):
        name, version = wheel_pin(wheel)
        if name == "typing":
            problems.append(f"{wheel.name}: the typing backport would shadow the standard library")
        found.setdefault(name, []).append((version, wheel))
    for name, version in pins.items():
        match = [w for v, w in found.get(name, []) if v == version]
        if match:
            chosen.append(match[0])
        else:
            others = ", ".join(w.name for _, w in found.get(name, [])) or "no wheel"
            problems.append(f"{name}=={version} not among the wheels ({others})")
    return chosen, problems


def shadows_typing(site: Path) -> bool:
    """Whether ``site`` holds a typing module (the old backport) that would
    shadow the standard library's when ``site`` is on PYTHONPATH."""
    return (site / "typing.py").exists() or (site / "typing").is_dir()


# -- running the steps ---------------------------------------------------------
def run_command(cmd: Sequence[str], limit: float, emit: Emit, env: Mapping[str, str]) -> int:
    """Runs ``cmd`` in its own process group, each output line to ``emit``; past
    ``limit`` seconds the group gets SIGTERM, 10 s later SIGKILL, and the exit
    status is 124 (as from coreutils' timeout)."""
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        cwd=REPO,
        text=True,
        errors="replace",
        bufsize=1,
        start_new_session=True,
    )

    def read() -> None:
        for line in proc.stdout:
            emit(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        emit(f"timed out after {limit:.0f}s: terminating")
        rc = 124
    finally:
        # Also on a normal exit: what the command left running would hold the
        # output pipe open and run into the next step.
        _kill_group(proc)
        reader.join(timeout=10)
    return 128 - rc if rc < 0 else rc  # killed by signal N: 128 + N, as a shell says


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to ``proc``'s process group, SIGKILL to what is left 10 s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        if sig == signal.SIGTERM:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


class Check:
    """The steps of one run: the time budget, the log and the summary."""

    def __init__(self, out: Path, budget: float, dry_run: bool) -> None:
        self.out, self.budget, self.dry_run = out, budget, dry_run
        self.start = time.monotonic()
        self.steps: list[dict] = []
        self.log = (out / "gpu_check.log").open("w")
        self.lock = threading.Lock()  # a step's reader thread writes too

    def elapsed(self) -> int:
        return int(time.monotonic() - self.start)

    def say(self, message: str) -> None:
        """A line headed with the time, to the terminal and the log."""
        self._write(f"[gpu_check {time.strftime('%H:%M:%S')} {self.elapsed()}s] {message}")

    def _write(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)
            self.log.write(line + "\n")
            self.log.flush()

    def step(self, name: str, cap: float, body: Callable[[float, Emit], int], command: str) -> str:
        """Runs ``body(limit, emit)`` for at most ``cap`` seconds, less if less of
        the budget is left, not at all if under 5 s is; returns its status."""
        limit = int(min(cap, self.budget - self.elapsed()))
        if limit < 5:
            self.say(f"{name}: skipped, the {self.budget:.0f}s budget is spent")
            return self._record(name, "out_of_time", None, 0, limit, command, [])
        self.say(f"{name} (at most {limit}s): {command}")
        tail: deque[str] = deque(maxlen=TAIL_LINES)

        def emit(line: str) -> None:
            tail.append(line)
            self._write(line)

        t0 = self.elapsed()
        try:
            rc = body(limit, emit)
        except Exception as exc:  # a broken step fails, the check goes on
            emit(f"{type(exc).__name__}: {exc}")
            rc = 1
        except BaseException:  # SIGTERM or Ctrl-C: the summary must not read ok
            self._record(name, "interrupted", None, self.elapsed() - t0, limit, command, list(tail))
            raise
        status = "ok" if rc == 0 else "timeout" if rc in (124, 137) else "failed"
        seconds = self.elapsed() - t0
        self.say(f"{name}: {status} (exit {rc}, {seconds}s)")
        return self._record(name, status, rc, seconds, limit, command, list(tail))

    def command(self, name: str, cap: float, cmd: Sequence[str], env: Mapping[str, str]) -> str:
        """A step that runs ``cmd``."""

        def body(limit: float, emit: Callable[[str], None]) -> int:
            return run_command(cmd, limit, emit, env)

        return self.step(
            name, cap, body, " ".join("python" if c == sys.executable else c for c in cmd)
        )

    def skipped(self, name: str, reason: str, status: str = "skipped") -> None:
        """A step not run: left out on purpose, or ``status`` when it cannot run."""
        self.say(f"{name}: {status} ({reason})")
        self._record(name, status, None, 0, 0, reason, [])

    def _record(
        self,
        name: str,
        status: str,
        rc: int | None,
        seconds: int,
        limit: int,
        command: str,
        tail: list[str],
    ) -> str:
        self.steps.append(
            {
                "name": name,
                "status": status,
                "exit": rc,
                "seconds": seconds,
                "limit_s": limit,
                "command": command,
                "tail": tail,
            }
        )
        return status

    @property
    def ok(self) -> bool:
        """Whether every step passed or was left out on purpose."""
        return all(s["status"] in ("ok", "skipped") for s in self.steps)

    def write_summary(self) -> None:
        """OUT_DIR/summary.json: the steps and the files next to it."""
        files = {p.name for p in self.out.iterdir() if p.is_file()} | {"summary.json"}
        summary = {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "seconds": self.elapsed(),
            "budget_s": int(self.budget),
            "steps": self.steps,
            "files": sorted(files),
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.say(f"summary: {self.out / 'summary.json'}")
        self.log.close()


# -- the steps -----------------------------------------------------------------
def install_wheels(
    wheels_dir: Path, site: Path, pins: Mapping[str, str], limit: float, emit: Emit
) -> int:
    """Installs the wheels of ``pins`` from ``wheels_dir`` into ``site`` (emptied
    first) without index or dependency resolution; 1 when a pin has no wheel or
    a typing module would land in ``site``."""
    wheels = sorted(wheels_dir.glob("*.whl"))
    if not wheels:
        emit(f"no wheels in {wheels_dir}: run 'make gpu-wheels' and copy .gpu-wheels/ here")
        return 1
    chosen, problems = select_wheels(wheels, pins)
    for problem in problems:
        emit(f"problem: {problem}")
    if problems:
        emit(f"{wheels_dir} lacks pins of {REQUIREMENTS.name}: rerun 'make gpu-wheels'")
        return 1
    for wheel in sorted(set(wheels) - set(chosen)):
        emit(f"left out (not pinned): {wheel.name}")
    shutil.rmtree(site, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--disable-pip-version-check",
        *PLATFORM,
        "--target",
        str(site),
        *map(str, chosen),
    ]
    rc = run_command(cmd, limit, emit, os.environ)
    if rc != 0:
        return rc
    if shadows_typing(site):
        emit(f"{site} holds a typing module: it would shadow the standard library")
        return 1
    emit(f"installed {len(chosen)} wheels into {site}")
    return 0


def cuda_test_files() -> list[str]:
    """The test files that mark tests ``cuda``, relative to the repository."""
    files = sorted((REPO / "tests").rglob("test_*.py"))
    return [str(f.relative_to(REPO)) for f in files if "mark.cuda" in f.read_text()]


def bench_commands(out: Path, fast_set: str) -> dict[str, tuple[float, list[str]]]:
    """``{step: (cap_s, tools/benchmark.py arguments)}``. Train: cityscapes_ann
    (ANN R-50, batch 2 of 512x1024 crops) and cityscapes_ann_r101_769 (R-101,
    batch 2 of 769x769), synthetic batches on the GPU. Infer: each recipe's
    evaluation, R-50 whole 1024x2048 images, R-101 sliding 769x769 windows at
    stride 513. Each set runs in its own process with its own --timeout, so a
    set that hangs costs its row, not the file."""
    sets = f"--device cuda --sets fp32,{fast_set} --warmup 3"
    steps = {
        "bench_train": (
            200,
            f"train {sets} --experiments cityscapes_ann,cityscapes_ann_r101_769 "
            "--no-loader --iters 10 --timeout 80",
        ),
        "bench_infer_r50": (
            55,
            f"infer {sets} --models ann_r50 --size 1024x2048 --modes whole "
            "--repeats 10 --timeout 45",
        ),
        "bench_infer_r101": (
            65,
            f"infer {sets} --models ann_r101 --size 1024x2048 --modes slide "
            "--repeats 5 --timeout 55",
        ),
    }
    return {
        name: (cap, ["tools/benchmark.py", *args.split(), "--json", str(out / f"{name}.json")])
        for name, (cap, args) in steps.items()
    }


def run_check(opts: Options, environ: Mapping[str, str]) -> int:
    """All the steps; returns the exit status."""
    py = sys.executable
    wheels = Path(environ.get("GPU_WHEELS") or REPO / ".gpu-wheels")
    site = Path(environ.get("GPU_SITE") or Path(tempfile.gettempdir()) / "ann-gpu-site").resolve()
    fast_set = environ.get("GPU_CHECK_FAST_SET") or "bf16+cl+compile"
    opts.out.mkdir(parents=True, exist_ok=True)
    out = opts.out.resolve()
    check = Check(out, float(environ.get("GPU_CHECK_BUDGET_S") or 470), opts.dry_run)
    env = {
        **environ,
        "PYTHONPATH": f"{site}{os.pathsep}{REPO}",
        "PYTHONUNBUFFERED": "1",
        "NO_ALBUMENTATIONS_UPDATE": "1",
    }
    try:
        status = check.step(
            "install",
            90,
            lambda limit, emit: install_wheels(wheels, site, read_pins(), limit, emit),
            f"pip install --no-index --no-deps --target {site} the wheels of {wheels} pinned in "
            f"{REQUIREMENTS.relative_to(REPO)}",
        )
        if status != "ok":
            check.say("the wheels did not install: nothing else can import; stopping")
            return 1
        report = [py, str(SCRIPT.with_name("gpu_env.py")), str(out / "env.json"), str(site)]
        check.command("env", 60, report + ["--dry-run"] * opts.dry_run, env)

        files, pytest = cuda_test_files(), [py, "-m", "pytest", "-m", "cuda", "-q"]
        if not opts.tests:
            check.skipped("cuda_tests", "--skip-tests")
        elif not files:
            check.skipped("cuda_tests", "no test file marks tests cuda", status="failed")
        elif opts.dry_run:
            # Collecting imports albumentations, whose cp312 extensions only
            # Python 3.12 loads: another collects with its own packages instead.
            own = sys.version_info[:2] != (3, 12)
            collect = {**env, "PYTHONPATH": str(REPO)} if own else env
            check.command("cuda_tests", 120, [*pytest, "--collect-only", *files], collect)
        else:
            junit = ["-rfEs", "--junitxml", str(out / "cuda_tests.xml")]
            check.command("cuda_tests", 150, [*pytest, *junit, *files], env)

        benches = bench_commands(out, fast_set)
        if not opts.bench:
            check.skipped("bench", "--skip-bench")
        elif opts.dry_run:
            check.command("bench_train", 60, [py, "tools/benchmark.py", "train", "--help"], env)
            check.command("bench_infer", 60, [py, "tools/benchmark.py", "infer", "--help"], env)
            for _, cmd in benches.values():
                check.say("would run: " + " ".join(cmd))
        else:
            for name, (cap, cmd) in benches.items():
                check.command(name, cap, [py, *cmd], env)
        verdict = "all steps passed" if check.ok else "a step failed"
        check.say(f"done in {check.elapsed()}s: {verdict}")
        return 0 if check.ok else 1
    finally:
        check.write_summary()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The command line: ``OUT_DIR [--dry-run] [--skip-tests] [--skip-bench]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        if str(exc):
            print(f"gpu_check: {exc}", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    if opts is None:
        print(USAGE, file=sys.stderr)
        return 0
    return run_check(opts, os.environ if environ is None else environ)


if __name__ == "__main__":
    # A SIGTERM from outside unwinds like an exception: the running step's
    # process group is killed and summary.json still written.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
