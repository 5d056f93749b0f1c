"""python tools/benchmark.py train [--experiments demo,cityscapes_ann] [--model M] [--size HxW]
[--batch B] [--sets ...] [--iters N] [--warmup N] [--device D] [--workers W] [--no-loader]

Full training iterations of an experiment's model for option sets side by
side, each in its own process on one seeded synthetic batch on the device,
through the trainer's own build_training and train_step (ann.engine.build),
random weights; one more row runs the first set on the trainer's loader.
docs/performance.md describes the columns and the defaults.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ann.benchmarks import harness, options
from ann.benchmarks.options import BASELINE
from ann.engine.build import build_training, train_loader
from ann.models.pretrained import without_pretrained
from ann.speed import prepare_model

CPU_TARGETS = (("demo", None, None), ("cityscapes_ann", "257x257", 2))
CUDA_TARGETS = (("cityscapes_ann", None, None), ("cityscapes_ann_r101_769", None, None))


def target_config(spec: dict) -> DictConfig:
    """The experiment's config with the benchmark's model, crop, batch and overrides."""
    extra = [f"model={spec['model']}"] if spec.get("model") else []
    if spec.get("size"):
        extra.append("dataset.train.transforms.crop_size=[{},{}]".format(*spec["size"]))
    if spec.get("batch"):
        extra.append(f"trainer.batch_size={spec['batch']}")
    if spec.get("workers") is not None:
        extra.append(f"trainer.num_workers={spec['workers']}")
    experiment = f"experiment={spec['experiment']}"
    return harness.compose("train", [experiment, *extra, *spec["overrides"]])


def synthetic_batch(cfg: DictConfig, device: torch.device) -> dict:
    """A seeded batch on the device: image (B, 3, H, W) float32 ~ N(0, 1)
    (normalised pixels), mask (B, H, W) int64 uniform over the classes."""
    g = torch.Generator().manual_seed(0)
    b, k = int(cfg.trainer.batch_size), int(cfg.dataset.num_classes)
    h, w = cfg.dataset.train.transforms.crop_size
    image = torch.randn(b, 3, h, w, generator=g)
    mask = torch.randint(0, k, (b, h, w), generator=g)
    return {"image": image.to(device), "mask": mask.to(device)}


def loader_dataset(cfg: DictConfig, tmp: Path) -> tuple[torch.utils.data.Dataset, str]:
    """The experiment's training set, or (when it is not on disk) 8 synthetic
    street-like PNG pairs at the dataset's scale through its training
    transforms; with a description for the table."""
    from ann.data.folder import FolderDataset

    try:
        dataset = instantiate(cfg.dataset.train)
        return dataset, f"{cfg.dataset.name}, {len(dataset)} images"
    except Exception as exc:  # the datasets raise DataError, wrapped by Hydra
        root = cfg.dataset.get("root")
        missing = "not on disk" if root and not Path(root).exists() else type(exc).__name__
    tcfg = cfg.dataset.train.transforms
    scale = tcfg.get("scale")
    w, h = (max(scale), min(scale)) if scale else tuple(tcfg.crop_size)[::-1]
    w, h = max(w, 256), max(h, 128)  # make_inputs' smallest street scene
    k, ignore = int(cfg.dataset.num_classes), int(cfg.dataset.ignore_index)
    harness.write_tree(tmp, 8, w, h, classes=k, ignore=ignore)
    classes = [str(i) for i in range(k)]
    dataset = FolderDataset(
        tmp, "train", classes, transforms=instantiate(tcfg), ignore_index=ignore
    )
    return dataset, f"synthetic {w}x{h} PNGs ({cfg.dataset.name} {missing})"


def worker(spec: dict) -> dict:
    """One option set of one target in this process: times, peak, first losses."""
    device, opts, warmup = options.start(spec)
    if opts.compile:  # dropout masks from the eager RNG, so that the first loss matches fp32's
        from torch._inductor import config

        config.fallback_random = True
    overrides = [*spec["overrides"], *opts.trainer_overrides(spec["compile_mode"])]
    cfg = target_config({**spec, "overrides": overrides})
    import ann.models  # noqa: F401 - imported before the base, so that it is not counted

    memory = harness.PeakMemory(device)
    torch.manual_seed(0)
    model = instantiate(without_pretrained(cfg.model)).to(device)
    parts = build_training(cfg, model, device)
    mode = spec["compile_mode"]  # compiled last, as the trainer does
    parts.model = prepare_model(parts.model, compile=opts.compile, compile_mode=mode).train()
    with tempfile.TemporaryDirectory() as tmp:
        if spec["loader"]:
            dataset, data = loader_dataset(cfg, Path(tmp))
            n = int(cfg.trainer.num_workers)
            data += f", {n} worker{'' if n == 1 else 's'}"
            batches = iter(train_loader(dataset, cfg.trainer, device))
        else:
            data, batches = "synthetic", itertools.repeat(synthetic_batch(cfg, device))
        steps: list[tuple[dict, float]] = []
        torch.manual_seed(0)  # the same dropout masks in every set
        step = lambda: steps.append(parts.step(batches))  # noqa: E731
        times, peak, _ = harness.measure(step, warmup + spec["iters"], device, memory)
        batches = None  # stops the loader's workers before the folder goes
    batch = int(cfg.trainer.batch_size)
    return {
        "data": data,
        "size": list(cfg.dataset.train.transforms.crop_size),
        "batch": batch,
        **harness.timings(times, warmup, batch, peak, opts.compile),
        "data_wait_s": statistics.median(w for _, w in steps[warmup : len(times)]),
        "first_loss": {k: float(v) for k, v in steps[0][0].items()},
    }


def targets(args: argparse.Namespace) -> list[dict]:
    """The (experiment, model, size, batch) specs to run, resolved against the configs."""
    chosen = (
        [(e, None, None) for e in args.experiments.split(",")]
        if args.experiments
        else (CPU_TARGETS if args.device == "cpu" else CUDA_TARGETS)
    )
    specs = []
    for experiment, size, batch in chosen:
        size = args.size or size
        spec = {
            "experiment": experiment,
            "model": args.model,
            "workers": args.workers,
            "size": list(harness.parse_size(size)) if size else None,
            "batch": args.batch or batch,
            "overrides": args.override,
        }
        cfg = target_config(spec)
        (h, w), b = cfg.dataset.train.transforms.crop_size, int(cfg.trainer.batch_size)
        spec.update(size=[h, w], batch=b)
        head = cfg.model.decode_head._target_.rsplit(".", 1)[-1]
        depth = cfg.model.backbone.get("depth", "?")
        specs.append({**spec, "label": f"{experiment}: {head} R-{depth} {b}x{h}x{w}"})
    return specs


def _row(label: str, name: str, r: dict, base: dict | None, loss_ok: bool) -> list[str]:
    if "skipped" in r:
        return [label, name, *options.set_cells(r, base), "-", "-", r["skipped"]]
    loss, delta = r["first_loss"]["loss"], "-"
    if loss_ok and base and "skipped" not in base:
        r["loss_rel_diff"] = (loss - base["first_loss"]["loss"]) / base["first_loss"]["loss"]
        delta = f"{r['loss_rel_diff']:+.1e}"
    return [label, name, *options.set_cells(r, base), f"{loss:.4f}", delta, r["data"]]


def main(argv: list[str]) -> dict:
    """Runs every (target, set), prints the table, returns {"config", "env", "targets"}."""
    args = options.parse(
        argv,
        "benchmark.py train",
        __doc__,
        "iters",
        3,
        [
            ("--experiments", dict(help="comma list of configs/experiment names")),
            ("--model", dict(help="a configs/model name instead of the experiments' own")),
            ("--size", dict(help="HxW crop for every target (default: the experiment's)")),
            ("--batch", dict(type=int, help="batch for every target (default: the experiment's)")),
            ("--workers", dict(type=int, help="loader row: workers (default: the experiment's)")),
            ("--no-loader", dict(action="store_true", help="leave out the real-loader row")),
        ],
    )
    env = harness.environment(args.device, args.threads)
    shared = {
        "device": args.device,
        "iters": args.iters,
        "warmup": args.warmup,
        "compile_mode": args.compile_mode,
        "compile_cache": args.compile_cache,
    }
    out = []
    rows = [
        ["target", "set", "iter ms", "img/s", *options.SET_COLUMNS, "loss@1", "Δloss rel", "data"]
    ]
    for spec in targets(args):
        job = {**spec, **shared, "loader": False}
        sets = options.run_sets(worker, job, args, spec["label"])
        entry = {k: spec[k] for k in ("experiment", "model", "size", "batch", "label")}
        out.append({**entry, "sets": sets})
        rows += [_row(spec["label"], name, r, sets.get(BASELINE), True) for name, r in sets.items()]
        # The loader row: the first set that ran (fp16 may be skipped on a CPU).
        ran = [name for name, r in sets.items() if "skipped" not in r]
        if not args.no_loader and ran:
            r = harness.run_worker(worker, {**job, "set": ran[0], "loader": True}, args.threads)
            out[-1]["loader"] = {"set": ran[0], **r}
            print(f"  {spec['label']} loader: {out[-1]['loader']}", file=sys.stderr, flush=True)
            # Real batches: its loss is not comparable with the synthetic batch's.
            name = f"{ran[0]} + loader"
            rows.append(_row(spec["label"], name, out[-1]["loader"], sets.get(BASELINE), False))
    env["loadavg_end"] = list(os.getloadavg())
    harness.print_table(
        f"train: {args.device}, {harness.describe(env)}; median of {args.iters} iterations after "
        f"{args.warmup} warm-up (compile sets at least 2); ratios vs {BASELINE} eager "
        "(speedup: higher is faster; mem: peak / fp32's); Δloss: first-iteration loss vs "
        "fp32's, same batch",
        rows,
    )
    return {"config": vars(args), "env": env, "targets": out}
