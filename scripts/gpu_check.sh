#!/usr/bin/env bash
# The prepared GPU check (docs/gpu_check.md): on a CUDA machine whose image has
# PyTorch, torchvision, OpenCV, TensorBoard, tqdm, Pillow, SciPy, NumPy, pytest
# and matplotlib but not Hydra, OmegaConf, albumentations or cityscapesscripts,
# in one call of at most 8 minutes:
#
#   1. install   the wheels of `make gpu-wheels` (.gpu-wheels/, carried along)
#                into a target folder, no index, no dependency resolution;
#   2. env       import check from that folder, the machine → OUT_DIR/env.json;
#   3. tests     the tests marked `cuda` → OUT_DIR/cuda_tests.xml;
#   4. bench_*   the train and infer benchmarks at the recipe sizes, fp32 eager
#                and the fastest option set → OUT_DIR/bench_*.json.
#
# Every step's status, time and output tail → OUT_DIR/summary.json; the whole
# output also → OUT_DIR/gpu_check.log (7 files in all: the device tool brings
# back at most 8).
#
# Usage: scripts/gpu_check.sh OUT_DIR [--dry-run] [--skip-tests] [--skip-bench]
#   --dry-run     no GPU: install, import check and env.json for real; the tests
#                 only collected, the benchmarks only asked for --help
#   --skip-tests, --skip-bench  leave those steps out
# Environment: PYTHON (python3), GPU_WHEELS (<repo>/.gpu-wheels), GPU_SITE
# (${TMPDIR:-/tmp}/ann-gpu-site, emptied first), GPU_CHECK_BUDGET_S (470: no
# step starts after it, each is cut to what is left), GPU_CHECK_FAST_SET
# (bf16+cl+compile).
# Exit status: 0 all steps passed, 1 a step failed or timed out, 2 bad usage.
# shellcheck disable=SC2317  # functions run through `step` and the EXIT trap
set -euo pipefail

usage() {
    echo "usage: scripts/gpu_check.sh OUT_DIR [--dry-run] [--skip-tests] [--skip-bench]" >&2
}

OUT="" DRY=0 TESTS=1 BENCH=1
for arg in "$@"; do
    case "$arg" in
    --dry-run) DRY=1 ;;
    --skip-tests) TESTS=0 ;;
    --skip-bench) BENCH=0 ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*)
        echo "gpu_check.sh: unknown option $arg" >&2
        usage
        exit 2
        ;;
    *)
        if [[ -n $OUT ]]; then
            echo "gpu_check.sh: one OUT_DIR only, got $OUT and $arg" >&2
            usage
            exit 2
        fi
        OUT=$arg
        ;;
    esac
done
if [[ -z $OUT ]]; then
    usage
    exit 2
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
WHEELS=${GPU_WHEELS:-$REPO/.gpu-wheels}
SITE=${GPU_SITE:-${TMPDIR:-/tmp}/ann-gpu-site}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
FAST_SET=${GPU_CHECK_FAST_SET:-bf16+cl+compile}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
LOG=$OUT/gpu_check.log
: >"$LOG"
: >"$WORK/steps.tsv"
cd "$REPO"
export PYTHONPATH="$SITE:$REPO" PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1

# The wheels are for the GPU image's Python 3.12 on x86-64 whatever runs the
# install (a dry run here may be another Python): pip installs for that target.
PLATFORM=(--python-version 3.12 --implementation cp --abi cp312
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --only-binary=:all:)

say() { echo "[gpu_check $(date +%H:%M:%S) ${SECONDS}s] $*" | tee -a "$LOG"; }

# step NAME CAP_S CMD...: runs CMD for at most CAP_S seconds (less if less of
# the budget is left; not at all if none is), its output to the terminal, the
# log and $WORK/NAME.out; records name, status, exit code, time and limit.
# A function of this script runs without the time limit (and without errexit:
# it returns its own status).
FAILED=0 LAST_STATUS=
step() {
    local name=$1 cap=$2
    shift 2
    local left=$((BUDGET - SECONDS)) limit rc status t0
    limit=$((cap < left ? cap : left))
    if ((limit < 5)); then
        say "$name: skipped, the ${BUDGET}s budget is spent"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "out_of_time" "" 0 "$limit" "$*" >>"$WORK/steps.tsv"
        FAILED=1
        LAST_STATUS=out_of_time
        return 0
    fi
    say "$name (at most ${limit}s): $*"
    t0=$SECONDS
    set +e
    if declare -F "$1" >/dev/null; then # a function of this script: no timeout
        "$@" 2>&1 | tee "$WORK/$name.out" | tee -a "$LOG"
    else
        timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$WORK/$name.out" | tee -a "$LOG"
    fi
    rc=${PIPESTATUS[0]}
    set -e
    status=ok
    if ((rc == 124 || rc == 137)); then
        status=timeout
    elif ((rc != 0)); then
        status=failed
    fi
    [[ $status == ok ]] || FAILED=1
    LAST_STATUS=$status
    say "$name: $status (exit $rc, $((SECONDS - t0))s)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$((SECONDS - t0))" "$limit" "$*" >>"$WORK/steps.tsv"
}

skipped() { # skipped NAME REASON
    say "$1: skipped ($2)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "skipped" "" 0 0 "$2" >>"$WORK/steps.tsv"
}

write_summary() {
    "$PYTHON" - "$WORK" "$OUT" "$DRY" "$BUDGET" "$SECONDS" <<'PY' || true
import json, sys
from pathlib import Path

work, out, dry, budget, seconds = sys.argv[1:]
steps = []
for line in Path(work, "steps.tsv").read_text().splitlines():
    name, status, rc, secs, limit, command = line.split("\t", 5)
    log = Path(work, f"{name}.out")
    tail = log.read_text(errors="replace").splitlines()[-40:] if log.is_file() else []
    steps.append({
        "name": name, "status": status, "exit": int(rc) if rc else None,
        "seconds": int(secs), "limit_s": int(limit), "command": command, "tail": tail,
    })
summary = {
    "ok": all(s["status"] in ("ok", "skipped") for s in steps),
    "dry_run": dry == "1", "seconds": int(seconds), "budget_s": int(budget), "steps": steps,
    "files": sorted({p.name for p in Path(out).iterdir() if p.is_file()} | {"summary.json"}),
}
Path(out, "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
PY
    say "summary: $OUT/summary.json"
}
cleanup() {
    write_summary
    rm -rf "$WORK"
}
trap cleanup EXIT

# -- 1. install -----------------------------------------------------------
install_wheels() {
    shopt -s nullglob
    local wheels=("$WHEELS"/*.whl)
    shopt -u nullglob
    if ((${#wheels[@]} == 0)); then
        echo "no wheels in $WHEELS: run 'make gpu-wheels' there and carry .gpu-wheels" >&2
        return 1
    fi
    rm -rf "$SITE" || return 1
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --disable-pip-version-check "${PLATFORM[@]}" --target "$SITE" "${wheels[@]}" || return 1
    # The old `typing` backport (declared by cityscapesscripts) on PYTHONPATH
    # would shadow the standard library's typing module.
    if [[ -e $SITE/typing.py || -d $SITE/typing ]]; then
        echo "$SITE holds a typing module: it would shadow the standard library" >&2
        return 1
    fi
    echo "installed ${#wheels[@]} wheels into $SITE"
}
step install 90 install_wheels
if [[ $LAST_STATUS != ok ]]; then
    say "the wheels did not install: nothing else can import; stopping"
    exit 1
fi

# -- 2. env: imports from the target folder, the machine ----------------------
step env 60 "$PYTHON" - "$OUT/env.json" "$SITE" "$DRY" <<'PY'
import importlib, importlib.metadata as md, importlib.util, json, platform, sys
from pathlib import Path

out, site, dry = sys.argv[1], Path(sys.argv[2]).resolve(), sys.argv[3] == "1"
problems = []
# Each carried package must come from the target folder, not from whatever
# else the interpreter sees.
carried = ["hydra", "omegaconf", "antlr4", "albumentations", "albucore", "pydantic",
           "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions",
           "stringzilla", "simsimd", "cityscapesscripts", "appdirs", "pyquaternion",
           "coloredlogs", "humanfriendly"]
# Python 3.12 (the GPU image) imports everything; another Python (a dry run)
# cannot load the cp312 extensions: for it a module in the folder will do.
full = sys.version_info[:2] == (3, 12)
origins = {}
for name in carried:
    spec = importlib.util.find_spec(name)
    origin = spec and spec.origin and Path(spec.origin).resolve()
    origins[name] = str(origin)
    if origin and site in origin.parents:
        continue
    there = [p for p in (site / name, site / f"{name}.py") if p.exists()]
    there += sorted(site.glob(f"{name}.cpython-312-*.so"))
    if full or not there:
        problems.append(f"{name} not from {site}: {origin}")
    else:
        origins[name] = f"{there[0]} (not loadable by Python {sys.version_info[0]}.{sys.version_info[1]})"
import typing
if site in Path(typing.__file__).resolve().parents:
    problems.append(f"typing comes from {typing.__file__}, not the standard library")
modules = ["hydra", "omegaconf", "cityscapesscripts.helpers.labels", "ann"]
if full:
    modules += ["albumentations", "ann.data.transforms", "ann.engine.trainer"]
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        problems.append(f"import {name}: {type(exc).__name__}: {exc}")
env = {"python": sys.version, "executable": sys.executable, "platform": platform.platform(),
       "site": str(site), "full_import_check": full, "origins": origins}
versions = {}
for dist in md.distributions(path=[str(site)]):
    versions[dist.metadata["Name"]] = dist.version
env["carried"] = dict(sorted(versions.items()))
try:
    import torch
    env["torch"] = torch.__version__
    env["torch_cuda"] = torch.version.cuda
    env["cudnn"] = torch.backends.cudnn.version()
    env["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}",
                      "memory_gib": round(p.total_memory / 2**30, 1),
                      "multiprocessors": p.multi_processor_count, "count": torch.cuda.device_count()}
    elif not dry:
        problems.append("torch sees no CUDA device")
except ImportError as exc:
    problems.append(f"import torch: {exc}")
for name in ("torchvision", "numpy", "scipy", "cv2", "PIL", "tensorboard", "matplotlib", "pytest"):
    try:
        env.setdefault("image", {})[name] = getattr(importlib.import_module(name), "__version__", "?")
    except ImportError as exc:
        problems.append(f"import {name}: {exc}")
env["problems"] = problems
Path(out).write_text(json.dumps(env, indent=2) + "\n")
print(json.dumps({k: env.get(k) for k in ("python", "torch", "torch_cuda", "gpu", "carried")}, indent=1))
for p in problems:
    print("problem:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

# -- 3. the tests marked cuda -------------------------------------------------
mapfile -t CUDA_TEST_FILES < <(grep -l "mark.cuda" tests/test_*.py || true)
if ((TESTS == 0)); then
    skipped cuda_tests "--skip-tests"
elif ((${#CUDA_TEST_FILES[@]} == 0)); then
    step cuda_tests 10 false # no test file marks anything cuda
elif ((DRY)); then
    # Collecting imports albumentations, whose cp312 extensions only Python 3.12
    # loads: another Python collects with its own packages instead.
    COLLECT_PATH=$PYTHONPATH
    if [[ $("$PYTHON" -c 'import sys; print(sys.version_info[:2] == (3, 12))') != True ]]; then
        COLLECT_PATH=$REPO
    fi
    step cuda_tests 120 env PYTHONPATH="$COLLECT_PATH" \
        "$PYTHON" -m pytest -m cuda -q --collect-only "${CUDA_TEST_FILES[@]}"
else
    step cuda_tests 150 "$PYTHON" -m pytest -m cuda -q -rfEs \
        --junitxml "$OUT/cuda_tests.xml" "${CUDA_TEST_FILES[@]}"
fi

# -- 4. benchmarks: the recipes, fp32 eager and the fastest set ---------------
# Train: cityscapes_ann (ANN R-50, batch 2 of 512x1024 crops) and
# cityscapes_ann_r101_769 (ANN R-101, batch 2 of 769x769), synthetic batches on
# the GPU (--no-loader). Infer: each recipe's evaluation, R-50 whole 1024x2048
# images, R-101 sliding 769x769 windows at stride 513. Each set runs in its own
# process with its own --timeout, so a set that hangs costs its row, not the file.
SETS="fp32,$FAST_SET"
BENCH_TRAIN=(tools/benchmark.py train --device cuda --experiments "cityscapes_ann,cityscapes_ann_r101_769"
    --sets "$SETS" --no-loader --iters 10 --warmup 3 --timeout 80 --json "$OUT/bench_train.json")
BENCH_INFER_R50=(tools/benchmark.py infer --device cuda --models ann_r50 --size 1024x2048
    --modes whole --sets "$SETS" --repeats 10 --warmup 3 --timeout 45 --json "$OUT/bench_infer_r50.json")
BENCH_INFER_R101=(tools/benchmark.py infer --device cuda --models ann_r101 --size 1024x2048
    --modes slide --sets "$SETS" --repeats 5 --warmup 3 --timeout 55 --json "$OUT/bench_infer_r101.json")
if ((BENCH == 0)); then
    skipped bench "--skip-bench"
elif ((DRY)); then
    step bench_train 60 "$PYTHON" tools/benchmark.py train --help
    step bench_infer 60 "$PYTHON" tools/benchmark.py infer --help
    say "would run: ${BENCH_TRAIN[*]}"
    say "would run: ${BENCH_INFER_R50[*]}"
    say "would run: ${BENCH_INFER_R101[*]}"
else
    step bench_train 200 "$PYTHON" "${BENCH_TRAIN[@]}"
    step bench_infer_r50 55 "$PYTHON" "${BENCH_INFER_R50[@]}"
    step bench_infer_r101 65 "$PYTHON" "${BENCH_INFER_R101[@]}"
fi

say "done in ${SECONDS}s: $([[ $FAILED == 0 ]] && echo all steps passed || echo a step failed)"
exit "$FAILED"
