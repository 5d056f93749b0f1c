"""Inference of the segmentors (random weights) for speed option sets side by
side, each (model, mode, set) in its own process: time, peak memory and the
logits against fp32 eager's (docs/performance.md)."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import torch

from ann.benchmarks import harness, options

OPTIONS = {
    "--models": dict(default="ann_r50,ann_r101", help="configs/model names"),
    "--size": dict(type=harness.parse_size, help="HxW image (CPU 128x256, CUDA 1024x2048)"),
    "--modes": dict(default="whole,slide"),
    "--crop": dict(type=harness.parse_size, help="HxW slide window (default 769/1024 of H)"),
    "--stride": dict(type=harness.parse_size, help="HxW slide step (default 513/1024 of H)"),
}


def window_geometry(height: int) -> tuple[list[int], list[int]]:
    """The reference's 769 windows at stride 513 on a 1024-high image, scaled
    to ``height``: ([crop, crop], [stride, stride])."""
    crop, stride = max(round(height * 769 / 1024), 1), max(round(height * 513 / 1024), 1)
    return [crop, crop], [stride, stride]


def worker(spec: dict) -> dict:
    """One (model, mode, set) in this process: times, peak; the logits
    (1, K, H, W) are saved as ``spec["out_dir"]/SET.pt`` for the comparison."""
    from ann.evaluation.scores import infer_slide, infer_whole
    from ann.speed import configure_backends, forward_fn, prepare_model

    device, opts, warmup = options.start(spec)
    cfg = harness.model_config(spec["model"], *spec["overrides"])
    import ann.models  # noqa: F401 - imported before the base, so that it is not counted

    memory = harness.PeakMemory(device)
    configure_backends(device, cfg.trainer.cudnn_benchmark, cfg.trainer.tf32)
    torch.manual_seed(0)
    model = harness.build_model(cfg).to(device).eval()
    model = prepare_model(model, opts.channels_last, opts.compile, spec["compile_mode"])
    forward = forward_fn(model, opts.dtype, opts.channels_last)
    h, w = spec["size"]
    image = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)

    def run() -> torch.Tensor:
        if spec["mode"] == "slide":
            return infer_slide(forward, image, spec["crop"], spec["stride"])
        return infer_whole(forward, image)

    times, peak, logits = harness.measure(run, warmup + spec["repeats"], device, memory)
    torch.save(logits.float().cpu(), Path(spec["out_dir"]) / f"{spec['set']}.pt")
    return harness.timings(times, warmup, 1, peak, opts.compile)


def compare(logits: torch.Tensor, base: torch.Tensor) -> dict:
    """The largest |Δlogit| against the baseline's, also relative to its largest
    |logit|, and the share of pixels whose arg-max class agrees."""
    diff = float((logits - base).abs().max())
    return {
        "max_abs_diff": diff,
        "max_rel_diff": diff / max(float(base.abs().max()), 1e-12),
        "argmax_agree": float((logits.argmax(1) == base.argmax(1)).float().mean()),
    }


def main(argv: list[str]) -> dict:
    """Runs every (model, mode, set), prints the table, returns {"config", "env", "results"}."""
    args, env, shared = options.parse(argv, __name__, __doc__, "repeats", 2, OPTIONS)
    args.size = args.size or ([128, 256] if args.device == "cpu" else [1024, 2048])
    crop, stride = window_geometry(args.size[0])
    args.crop, args.stride = args.crop or crop, args.stride or stride
    shared.update(size=args.size, crop=args.crop, stride=args.stride)
    results: dict = {}
    header = ["model", "mode", "set", "ms/image", "img/s", *options.SET_COLUMNS]
    rows = [[*header, "rel max|Δlogit|", "argmax agree %", "note"]]
    for model, mode in itertools.product(args.models.split(","), args.modes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            job = {**shared, "model": model, "mode": mode, "out_dir": tmp}
            by_set = options.run_sets(worker, job, args, f"{model} {mode}")
            results.setdefault(model, {})[mode] = by_set
            if (base_file := Path(tmp) / f"{options.BASELINE}.pt").is_file():
                base = torch.load(base_file)
                for name, r in by_set.items():
                    if "skipped" not in r:
                        r.update(compare(torch.load(Path(tmp) / f"{name}.pt"), base))
        for name, r in by_set.items():
            cells = options.set_cells(r, by_set.get(options.BASELINE))
            diff = f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else "-"
            agree = f"{100 * r['argmax_agree']:.2f}" if "argmax_agree" in r else "-"
            rows.append([model, mode, name, *cells, diff, agree, r.get("skipped", "")])
    (h, w), (ch, cw), (sh, sw) = args.size, args.crop, args.stride
    what = f"infer: 1x3x{h}x{w}, slide: {ch}x{cw} windows at stride {sh}x{sw}"
    note = "logits vs fp32's: max |Δlogit| / max |fp32 logit|"
    options.print_sets_table(args, env, what, str(args.repeats), note, rows)
    return {"config": vars(args), "env": env, "results": results}
