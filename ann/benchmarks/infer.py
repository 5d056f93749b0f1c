"""python tools/benchmark.py infer [--models ann_r50,ann_r101] [--size HxW]
[--modes whole,slide] [--crop HxW] [--stride HxW] [--sets fp32,bf16,fp32+cl,bf16+cl]
[--repeats N] [--warmup N] [--device cpu|cuda] [--override KEY=VALUE ...]

Inference speed of the segmentors (eval, no_grad, random weights, 19 classes)
for option sets side by side (ann.benchmarks.options): one (1, 3, H, W) image
through ``ann.speed.forward_fn`` (autocast, input layout; the model is
put in the layout and compiled by ``prepare_model``) and
``ann.evaluation.inference.infer_whole`` or ``infer_slide``, each (model, mode,
set) in a fresh process: median seconds per image of ``--repeats`` after
``--warmup`` (compile sets at least 2, their extra time reported as
"compile s", a cold compile unless ``--compile-cache``), images/s and peak
memory over the timed calls. The logits are compared with fp32 eager's on the
same image: the largest absolute difference relative to the largest fp32
logit, and the share of pixels whose arg-max class agrees.

Defaults: on CUDA the recipe geometry, a 1024x2048 image, whole and sliding
769x769 windows at stride 513 (2x4 windows), ANN R-50 and R-101, all 12 sets,
10 repeats after 3 warm-up. On CPU a 128x256 image (an R-50 forward at
1024x2048 takes tens of seconds on 2 cores) with the same window geometry
scaled to its height (96x96 windows at stride 64: again 2x4), sets
fp32,bf16,fp16,fp32+cl,bf16+cl (fp16 skipped where oneDNN has no native
fp16), 2 repeats after 1 warm-up: a few minutes. ``--size 1024x2048`` runs
the recipe geometry on the CPU too (``--crop``/``--stride`` default to
769/513 of the height).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from ann.benchmarks.options import (
    BASELINE,
    OptionSet,
    PeakMemory,
    add_common_arguments,
    cold_compile,
    compose_train,
    cpu_fp16_skip,
    describe,
    environment,
    parse_sets,
    parse_size,
    print_table,
    ratio,
    run_worker,
    sync,
    timings,
)

CPU_SETS = "fp32,bf16,fp16,fp32+cl,bf16+cl"


def window_geometry(height: int) -> tuple[list[int], list[int]]:
    """The reference's 769 windows at stride 513 on a 1024-high image, scaled
    to ``height``: ([crop, crop], [stride, stride])."""
    crop, stride = max(round(height * 769 / 1024), 1), max(round(height * 513 / 1024), 1)
    return [crop, crop], [stride, stride]


def worker(spec: dict) -> dict:
    """One (model, mode, set) in this process: times, peak; the logits
    (1, K, H, W) are saved to ``spec["out"]`` for the comparison."""
    from ann.evaluation.inference import infer_slide, infer_whole
    from ann.models.pretrained import without_pretrained
    from ann.speed import configure_backends, forward_fn, prepare_model

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    opts = OptionSet.parse(spec["set"])
    if opts.compile:
        cold_compile(spec.get("compile_cache", False))
    cfg = compose_train(None, [f"model={spec['model']}", "dataset=cityscapes", *spec["overrides"]])
    import ann.models  # noqa: F401 - imported before the base, so that it is not counted

    memory = PeakMemory(device)
    configure_backends(device, cfg.trainer.cudnn_benchmark, cfg.trainer.tf32)
    torch.manual_seed(0)
    model = instantiate(without_pretrained(cfg.model)).to(device).eval()
    model = prepare_model(model, opts.channels_last, opts.compile, spec["compile_mode"])
    forward = forward_fn(model, opts.dtype, opts.channels_last)
    h, w = spec["size"]
    image = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    if spec["mode"] == "slide":

        def run() -> torch.Tensor:
            return infer_slide(forward, image, spec["crop"], spec["stride"])
    else:

        def run() -> torch.Tensor:
            return infer_whole(forward, image)

    warmup = max(spec["warmup"], 2 if opts.compile else 1)
    times, logits = [], None
    for _ in range(warmup + spec["repeats"]):
        logits = None  # not held through the next call, whose peak it would raise
        start = time.perf_counter()
        logits = run()
        sync(device)
        times.append(time.perf_counter() - start)
    logits = None
    memory.reset()  # one more pass, for the peak alone
    logits = run()
    sync(device)
    peak = memory.peak()
    torch.save(logits.float().cpu(), spec["out"])
    return timings(times, warmup, 1, peak, opts.compile)


def compare(logits: torch.Tensor, base: torch.Tensor) -> dict:
    """Largest |Δlogit|, also relative to the baseline's largest |logit| (random
    weights give logits of any scale: R-101's reach the hundreds), and the share
    of pixels whose arg-max class agrees, for (1, K, H, W) logits."""
    diff = float((logits - base).abs().max())
    return {
        "max_abs_diff": diff,
        "max_rel_diff": diff / max(float(base.abs().max()), 1e-12),
        "argmax_agree": float((logits.argmax(1) == base.argmax(1)).float().mean()),
    }


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmark.py infer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(p)
    p.add_argument("--models", default="ann_r50,ann_r101", help="configs/model names")
    p.add_argument("--size", help="HxW image (CPU 128x256, CUDA 1024x2048)")
    p.add_argument("--modes", default="whole,slide")
    p.add_argument("--crop", help="HxW slide window (default 769/1024 of the height, square)")
    p.add_argument("--stride", help="HxW slide step (default 513/1024 of the height)")
    p.add_argument("--repeats", type=int, help="timed images (CPU 2, CUDA 10)")
    p.add_argument("--warmup", type=int, help="untimed first images (CPU 1, CUDA 3)")
    args = p.parse_args(argv)
    on_cpu = args.device == "cpu"
    args.size = list(parse_size(args.size or ("128x256" if on_cpu else "1024x2048")))
    crop, stride = window_geometry(args.size[0])
    args.crop = list(parse_size(args.crop)) if args.crop else crop
    args.stride = list(parse_size(args.stride)) if args.stride else stride
    args.sets = args.sets or (CPU_SETS if on_cpu else "all")
    args.repeats = args.repeats or (2 if on_cpu else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if on_cpu else 3)
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (the peak is taken after the warm-up)")
    return args


def _row(model: str, mode: str, name: str, r: dict, base: dict | None) -> list[str]:
    if "skipped" in r:
        return [model, mode, name, "-", "-", "-", "-", "-", "-", "-", "-", r["skipped"]]
    base = base if base and "skipped" not in base else None
    r["speedup"] = base["time_s"] / r["time_s"] if base else None
    has_peak = base is not None and base["peak_bytes"] > 0
    r["memory_ratio"] = r["peak_bytes"] / base["peak_bytes"] if has_peak else None
    diff = f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else "-"
    agree = f"{100 * r['argmax_agree']:.2f}" if "argmax_agree" in r else "-"
    compile_s = f"{r['compile_s']:.0f}" if r["compile_s"] is not None else "-"
    return [
        model, mode, name, f"{r['time_s'] * 1000:.0f}", f"{r['images_per_s']:.2f}",
        ratio(base and base["time_s"], r["time_s"]), f"{r['peak_bytes'] / 2**20:.0f}",
        ratio(r["peak_bytes"], base and base["peak_bytes"]), compile_s, diff, agree, "",
    ]  # fmt: skip


def main(argv: list[str]) -> dict:
    """Runs every (model, mode, set), prints the table, returns {"config", "env", "results"}."""
    args = parse(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return {}
    sets = parse_sets(args.sets)
    env = environment(args.device, args.threads)
    shared = {"device": args.device, "threads": args.threads, "size": args.size,
              "crop": args.crop, "stride": args.stride, "repeats": args.repeats,
              "warmup": args.warmup, "compile_mode": args.compile_mode,
              "compile_cache": args.compile_cache, "overrides": args.override}  # fmt: skip
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for mode in args.modes.split(","):
                by_set: dict = {}
                for opts in sets:
                    skip = cpu_fp16_skip(opts, args.device, args.cpu_fp16)
                    out = str(Path(tmp) / f"{opts.name}.pt")
                    job = {**shared, "model": model, "mode": mode, "set": opts.name, "out": out}
                    if skip:
                        r = {"skipped": skip}
                    else:
                        r = run_worker(__name__, job, args.threads, args.timeout)
                    by_set[opts.name] = r
                    print(f"  {model} {mode} {opts.name}: {r}", file=sys.stderr, flush=True)
                base_out = Path(tmp) / f"{BASELINE}.pt"
                if base_out.is_file():
                    base = torch.load(base_out)
                    for name, r in by_set.items():
                        if "skipped" not in r:
                            r.update(compare(torch.load(Path(tmp) / f"{name}.pt"), base))
                for path in Path(tmp).glob("*.pt"):
                    path.unlink()
                results.setdefault(model, {})[mode] = by_set
    env["loadavg_end"] = list(os.getloadavg())
    header = ["model", "mode", "set", "ms/image", "img/s", "speedup", "peak MiB",
              "mem vs fp32", "compile s", "rel max|Δlogit|", "argmax agree %", "note"]  # fmt: skip
    rows = [header]
    for model, by_mode in results.items():
        for mode, by_set in by_mode.items():
            for name, r in by_set.items():
                rows.append(_row(model, mode, name, r, by_set.get(BASELINE)))
    h, w = args.size
    windows = f"{args.crop[0]}x{args.crop[1]} windows at stride {args.stride[0]}x{args.stride[1]}"
    print(
        f"infer: 1x3x{h}x{w}, slide: {windows}; {args.device}, {describe(env)}; median of "
        f"{args.repeats} after {args.warmup} warm-up (compile sets at least 2); ratios vs "
        f"{BASELINE} eager (speedup: "
        f"higher is faster; mem: peak / fp32's); logits vs fp32's: max |Δ| / max |fp32 logit|"
    )
    print_table(rows)
    return {"config": {k: v for k, v in vars(args).items() if k != "worker"}, "env": env,
            "results": results}  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
