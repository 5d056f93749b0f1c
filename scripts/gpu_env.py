"""The env step of scripts/gpu_check.py, in its own process with the target
folder first on PYTHONPATH: checks that each carried package is imported from
that folder and that ``typing`` is still the standard library's, imports the
modules training needs, and writes the machine and the versions as JSON.

Usage: gpu_env.py ENV_JSON SITE [--dry-run]; exit status 1 on any problem.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import platform
import sys
from importlib import metadata
from pathlib import Path

# The top-level modules of the pinned wheels: each must be imported from the
# target folder, not from whatever else the interpreter sees.
CARRIED = (
    "hydra",
    "omegaconf",
    "antlr4",
    "albumentations",
    "albucore",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_inspection",
    "typing_extensions",
    "stringzilla",
    "simsimd",
    "cityscapesscripts",
    "appdirs",
    "pyquaternion",
    "coloredlogs",
    "humanfriendly",
)
IMAGE = ("torchvision", "numpy", "scipy", "cv2", "PIL", "tensorboard", "matplotlib", "pytest")


def env_report(out: Path, site: Path, dry_run: bool) -> int:
    """The env step, run with ``site`` on PYTHONPATH: where the carried packages
    come from, the machine, the versions → ``out``; 1 on any problem."""
    site = site.resolve()
    problems = []
    # Python 3.12 (the GPU image) imports everything; another Python (a dry run)
    # cannot load the cp312 extensions: for it a module in the folder will do.
    full = sys.version_info[:2] == (3, 12)
    origins = {}
    for name in CARRIED:
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
            origins[name] = f"{there[0]} (not loadable by Python {platform.python_version()})"
    import typing

    if site in Path(typing.__file__).resolve().parents:
        problems.append(f"typing comes from {typing.__file__}, not the standard library")
    modules = ["hydra", "omegaconf", "cityscapesscripts.helpers.labels", "ann"]
    if full:
        modules += ["albumentations", "ann.data.transforms", "ann.engine.trainer"]
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # reported, not raised
            problems.append(f"import {name}: {type(exc).__name__}: {exc}")
    env: dict = {
        "python": sys.version,
        "executable": sys.executable,
        "platform": platform.platform(),
        "site": str(site),
        "full_import_check": full,
        "origins": origins,
    }
    versions = {d.metadata["Name"]: d.version for d in metadata.distributions(path=[str(site)])}
    env["carried"] = dict(sorted(versions.items()))
    try:
        import torch

        env.update(
            torch=torch.__version__,
            torch_cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            cuda_available=torch.cuda.is_available(),
        )
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            env["gpu"] = {
                "name": p.name,
                "capability": f"{p.major}.{p.minor}",
                "memory_gib": round(p.total_memory / 2**30, 1),
                "multiprocessors": p.multi_processor_count,
                "count": torch.cuda.device_count(),
            }
        elif not dry_run:
            problems.append("torch sees no CUDA device")
    except ImportError as exc:
        problems.append(f"import torch: {exc}")
    env["image"] = {}
    for name in IMAGE:
        try:
            env["image"][name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError as exc:
            problems.append(f"import {name}: {exc}")
    env["problems"] = problems
    out.write_text(json.dumps(env, indent=2) + "\n")
    keys = ("python", "torch", "torch_cuda", "gpu", "carried")
    print(json.dumps({k: env.get(k) for k in keys}, indent=1))
    for problem in problems:
        print("problem:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) not in (2, 3) or args[2:] not in ([], ["--dry-run"]):
        sys.exit("usage: gpu_env.py ENV_JSON SITE [--dry-run]")
    sys.exit(env_report(Path(args[0]), Path(args[1]), dry_run=args[2:] == ["--dry-run"]))
