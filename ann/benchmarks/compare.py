"""This project against mmsegmentation 1.2.2 on the same CPU: ANN R-50-D8
whole-model inference (eager fp32, and ours also with the fast path and the
ONNX Runtime backend) and one training step, with identical weights (mmseg's
random ones through the converter), threads and shapes. Both sides run in
alternating fresh processes; medians; speed-up = mmseg time / ours. mmseg is
the pinned tests/reference/mmseg-requirements.txt, installed with --no-deps
into a temporary folder (or --mmseg-packages PATH, kept for the next run), and
built by tests/reference/mmseg_real_step.py, as the integration test does."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ann.benchmarks import harness
from ann.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "reference"
CASES = ("infer", "fast", "onnxruntime", "train")
OPTIONS = {
    "--cases": dict(default="infer,fast,onnxruntime,train", help=f"comma list of {CASES}"),
    "--infer-size": dict(type=harness.parse_size, default=[512, 1024], help="HxW, batch 1"),
    "--train-size": dict(type=harness.parse_size, default=[512, 512], help="HxW crop"),
    "--batch": dict(type=int, default=2, help="training batch"),
    "--rounds": dict(type=int, default=2, help="fresh processes per side and case"),
    "--iters": dict(type=int, default=3, help="timed runs per process"),
    "--warmup": dict(type=int, default=1, help="untimed runs per process"),
    "--threads": dict(type=int, default=torch.get_num_threads()),
    "--experiment": dict(default="cityscapes_ann", help="ours: configs/experiment name"),
    "--override": dict(action="append", default=[], help="ours: Hydra override, repeatable"),
    "--mmseg-packages": dict(type=Path, help="install folder to reuse (installed if empty)"),
    "--timeout": dict(type=float, default=1800.0, help="seconds per process"),
}


class MmsegMissing(UserError):
    """The pinned mmsegmentation could not be installed or found."""


def install_mmseg(target: Path, timeout: float = 600) -> Path:
    """The pinned mmseg packages (tests/reference/mmseg-requirements.txt),
    installed from the package index with ``--no-deps`` into ``target``
    unless it already holds them. Returns ``target``."""
    requirements = REFERENCE / "mmseg-requirements.txt"
    if not requirements.is_file():
        raise MmsegMissing(f"{requirements}: missing; compare needs the repository's tests/")
    if (target / "mmseg").is_dir() and (target / "mmengine").is_dir():
        return target
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    proc = subprocess.run(
        [*command, "-r", str(requirements)], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise MmsegMissing(f"pip could not install the pinned mmsegmentation: {tail}")
    return target


def _batch(spec: dict, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded (B, 3, H, W) images and (B, H, W) labels (10 % ignored)."""
    gen = torch.Generator().manual_seed(0)
    b, (h, w) = (spec["batch"], spec["train_size"]) if train else (1, spec["infer_size"])
    label = torch.randint(0, 19, (b, h, w), generator=gen)
    label[torch.rand(b, h, w, generator=gen) < 0.1] = 255
    return torch.randn(b, 3, h, w, generator=gen), label


def mmseg_worker(spec: dict) -> dict:
    """mmseg's ANN R-50-D8 Cityscapes model (BN for SyncBN) with seeded random
    weights: ``spec["save"]`` writes its state dict; else times ``spec["case"]``
    (``encode_decode`` in eval mode, or ``loss`` + backward + SGD step)."""
    from reference.mmseg_real_step import build_mmseg, stub_mmcv_ops
    from reference.weights import randomise

    stub_mmcv_ops()
    torch.set_num_threads(spec["threads"])
    device = torch.device("cpu")
    memory = harness.PeakMemory(device)
    mm = randomise(build_mmseg(), seed=0)
    if spec.get("save"):
        torch.save(mm.state_dict(), spec["save"])
        return {}
    train = spec["case"] == "train"
    images, label = _batch(spec, train)
    meta = {k: tuple(images.shape[-2:]) for k in ("img_shape", "ori_shape", "pad_shape")}
    if train:
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample

        samples = [SegDataSample(metainfo=meta) for _ in label]
        for sample, lab in zip(samples, label, strict=True):
            sample.gt_sem_seg = PixelData(data=lab[None])
        # What mmseg's OptimWrapper does for the recipe's SGD.
        optimizer = torch.optim.SGD(mm.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        mm.train()

        def run() -> None:
            optimizer.zero_grad(set_to_none=True)
            losses = mm.loss(images, samples)
            sum(v for k, v in losses.items() if "loss" in k).backward()
            optimizer.step()

    else:
        mm.eval()

        def run() -> torch.Tensor:
            with torch.no_grad():
                return mm.encode_decode(images, [meta])

    return _timed(run, spec, memory)


def ours_worker(spec: dict) -> dict:
    """This project's model of ``spec["experiment"]`` with mmseg's weights
    (through the converter): eager inference, the fast path, the ONNX Runtime
    backend, or one training step as the trainer runs it (``build_training``
    with the config's options, ``trainer.*: auto`` resolved for this CPU)."""
    from ann.config.compose import compose
    from ann.convert.mmseg import from_mmseg
    from ann.engine.build import build_training
    from ann.evaluation.fast import fast_forward

    torch.set_num_threads(spec["threads"])
    device = torch.device("cpu")
    cfg = compose("train", [f"experiment={spec['experiment']}", *spec["overrides"]])
    memory = harness.PeakMemory(device)
    model = harness.build_model(cfg)
    state = torch.load(spec["weights"], weights_only=True)
    model.load_state_dict(from_mmseg(state, {}, Path("mmseg-1.2.2")).model)
    images, label = _batch(spec, spec["case"] == "train")
    if spec["case"] == "train":
        training = build_training(cfg, model.train(), device)
        batches = iter(lambda: {"image": images, "mask": label}, None)
        return _timed(lambda: training.step(batches), spec, memory)
    model.eval()
    forward = model
    if spec["case"] != "infer":
        backend = "onnxruntime" if spec["case"] == "onnxruntime" else None
        forward = fast_forward(model, device, backend, fast=True)

    def run() -> torch.Tensor:
        with torch.no_grad():
            return forward(images)

    return _timed(run, spec, memory)


def _timed(run: Callable[[], object], spec: dict, memory: harness.PeakMemory) -> dict:
    """``spec["iters"]`` timed runs after ``spec["warmup"]``, then the peak."""
    times, peak, _ = harness.measure(
        run, spec["warmup"] + spec["iters"], torch.device("cpu"), memory
    )
    return {"times_s": times[spec["warmup"] :], "peak_bytes": peak}


def _summary(runs: list[dict]) -> dict:
    """Median seconds and peak bytes over a side's processes (failures named)."""
    ok = [r for r in runs if "skipped" not in r]
    if not ok:
        return {"skipped": runs[0]["skipped"] if runs else "not run"}
    times = [t for r in ok for t in r["times_s"]]
    return {
        "time_s": statistics.median(times),
        "peak_bytes": int(statistics.median(r["peak_bytes"] for r in ok)),
        "times_s": times,
    }


def main(argv: list[str]) -> dict:
    """Installs mmseg, measures every case side by side, prints the table and
    returns {"config", "env", "results": {case: {"ours", "mmseg", "speedup"}}}."""
    args = harness.parse_args(argv, __name__, __doc__, OPTIONS)
    cases = [c for c in args.cases.split(",") if c]
    if unknown := set(cases) - set(CASES):
        raise UserError(f"--cases: unknown {sorted(unknown)}; expected some of {list(CASES)}")
    env = harness.environment("cpu", args.threads)
    with tempfile.TemporaryDirectory(prefix="ann_compare_") as tmp:
        packages = install_mmseg(args.mmseg_packages or Path(tmp) / "packages")
        raw = _measure(args, cases, packages, Path(tmp) / "mmseg_random.pth")
    results = {case: _result(case, raw) for case in cases}
    env["loadavg_end"] = list(os.getloadavg())
    _print(args, env, results)
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "env": env,
        "results": results,
    }


def _measure(
    args: argparse.Namespace, cases: list[str], packages: Path, weights: Path
) -> dict[str, dict[str, list[dict]]]:
    """Saves mmseg's seeded weights to ``weights``, then runs each case's sides
    in fresh processes, ``args.rounds`` times, the side that goes first
    alternating by round. Returns {case: {"ours"|"mmseg": [worker results]}}."""
    job = {
        "threads": args.threads,
        "infer_size": args.infer_size,
        "train_size": args.train_size,
        "batch": args.batch,
        "iters": args.iters,
        "warmup": args.warmup,
        "experiment": args.experiment,
        "overrides": args.override,
        "weights": str(weights),
    }
    mm_env = {"PYTHONPATH": os.pathsep.join(map(str, (packages, ROOT, ROOT / "tests")))}
    saved = harness.run_worker(
        mmseg_worker, {**job, "save": job["weights"]}, args.threads, args.timeout, mm_env
    )
    if "skipped" in saved:
        raise MmsegMissing(f"mmseg's model could not be built: {saved['skipped']}")
    raw: dict[str, dict[str, list[dict]]] = {c: {"ours": [], "mmseg": []} for c in cases}
    for rnd in range(args.rounds):
        for case in cases:
            for side in ["mmseg", "ours"] if rnd % 2 == 0 else ["ours", "mmseg"]:
                if side == "mmseg" and case in ("fast", "onnxruntime"):
                    continue  # mmseg's figure for these is its eager inference
                fn, extra = (mmseg_worker, mm_env) if side == "mmseg" else (ours_worker, None)
                r = harness.run_worker(fn, {**job, "case": case}, args.threads, args.timeout, extra)
                raw[case][side].append(r)
                harness.log(f"round {rnd + 1} {case} {side}:", r.get("skipped") or r["times_s"])
    return raw


def _result(case: str, raw: dict[str, dict[str, list[dict]]]) -> dict:
    """{"ours", "mmseg", "speedup"} of one case; the fast paths are set against
    mmseg's eager inference."""
    ours = _summary(raw[case]["ours"])
    mm_case = "infer" if case in ("fast", "onnxruntime") and "infer" in raw else case
    mmseg = _summary(raw[mm_case]["mmseg"])
    ok = "skipped" not in ours and "skipped" not in mmseg
    return {
        "ours": ours,
        "mmseg": mmseg,
        "speedup": mmseg["time_s"] / ours["time_s"] if ok else None,
    }


def _cell(side: dict, key: str) -> str:
    """A side's median seconds or peak MiB, "-" where it failed."""
    if "skipped" in side:
        return "-"
    return f"{side[key]:.3f}" if key == "time_s" else f"{side[key] / 2**20:.0f}"


def _print(args: argparse.Namespace, env: dict, results: dict) -> None:
    """One row per case: ours and mmseg time and peak, the speed-up."""
    from ann.speed import cpu_class

    (ih, iw), (th, tw) = args.infer_size, args.train_size
    what = {
        "infer": f"inference 1x3x{ih}x{iw}, eager fp32",
        "fast": f"inference 1x3x{ih}x{iw}, ours fast=true",
        "onnxruntime": f"inference 1x3x{ih}x{iw}, ours backend=onnxruntime",
        "train": f"training step {args.batch}x3x{th}x{tw}, trainer defaults",
    }
    rows = [["case", "ours s", "mmseg s", "speed-up", "ours MiB", "mmseg MiB", "note"]]
    for case, r in results.items():
        ours, mm = r["ours"], r["mmseg"]
        note = ours.get("skipped") or mm.get("skipped") or ""
        note = note or ("mmseg: its eager fp32" if case in ("fast", "onnxruntime") else "")
        speed = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        cells = [_cell(ours, "time_s"), _cell(mm, "time_s"), speed]
        rows.append([what[case], *cells, _cell(ours, "peak_bytes"), _cell(mm, "peak_bytes"), note])
    load = ", ".join(f"{v:.1f}" for v in env["loadavg"])
    load_end = ", ".join(f"{v:.1f}" for v in env["loadavg_end"])
    harness.print_table(
        f"compare: ours vs mmsegmentation 1.2.2; {env['device_name']} ({cpu_class()}), torch "
        f"{env['torch']}, {args.threads} threads; median of {args.rounds} processes x "
        f"{args.iters} runs after {args.warmup} warm-up each, sides alternating; load average "
        f"{load} at start, {load_end} at end (of {env['cpu_count']} CPUs); "
        "speed-up = mmseg time / ours (higher: ours faster)",
        rows,
    )
