"""Full training iterations (the trainer's build_training and train_step, random
weights) for speed option sets side by side, each in its own process on one
synthetic batch, and one row on the trainer's loader (docs/performance.md)."""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ann.benchmarks import harness, options
from ann.engine.build import build_training, train_loader
from ann.speed import prepare_model

CPU_TARGETS = (("demo", None, None), ("cityscapes_ann", "257x257", 2))
CUDA_TARGETS = (("cityscapes_ann", None, None), ("cityscapes_ann_r101_769", None, None))
OPTIONS = {
    "--experiments": dict(help="comma list of configs/experiment names"),
    "--model": dict(help="a configs/model name instead of the experiments' own"),
    "--size": dict(help="HxW crop for every target (default: the experiment's)"),
    "--batch": dict(type=int, help="batch for every target (default: the experiment's)"),
    "--workers": dict(type=int, help="loader row: workers (default: the experiment's)"),
    "--no-loader": dict(action="store_true", help="leave out the real-loader row"),
}


def synthetic_batch(cfg: DictConfig, device: torch.device) -> dict:
    """A seeded batch of the config's size on the device: N(0, 1) images, uniform labels."""
    g = torch.Generator().manual_seed(0)
    b, k = int(cfg.trainer.batch_size), int(cfg.dataset.num_classes)
    h, w = cfg.dataset.train.transforms.crop_size
    image = torch.randn(b, 3, h, w, generator=g)
    mask = torch.randint(0, k, (b, h, w), generator=g)
    return {"image": image.to(device), "mask": mask.to(device)}


def loader_dataset(cfg: DictConfig, tmp: Path) -> tuple[torch.utils.data.Dataset, str]:
    """The experiment's training set, or 8 synthetic street scenes at its scale
    through its transforms when it is not on disk; and the table's description."""
    from ann.data.folder import FolderDataset
    from ann.data.synthetic import write_street_scenes

    try:
        dataset = instantiate(cfg.dataset.train)
        return dataset, f"{cfg.dataset.name}, {len(dataset)} images"
    except Exception as exc:  # the datasets raise DataError, wrapped by Hydra
        root = cfg.dataset.get("root")
        missing = "not on disk" if root and not Path(root).exists() else type(exc).__name__
    tcfg = cfg.dataset.train.transforms
    scale = tcfg.get("scale")
    w, h = (max(scale), min(scale)) if scale else tuple(tcfg.crop_size)[::-1]
    w, h = max(w, 256), max(h, 128)  # the smallest street scene
    k, ignore = int(cfg.dataset.num_classes), int(cfg.dataset.ignore_index)
    write_street_scenes(tmp, 8, w, h, classes=k, ignore=ignore)
    classes, transforms = [str(i) for i in range(k)], instantiate(tcfg)
    dataset = FolderDataset(tmp, "train", classes, transforms=transforms, ignore_index=ignore)
    return dataset, f"synthetic {w}x{h} PNGs ({cfg.dataset.name} {missing})"


def worker(spec: dict) -> dict:
    """One option set of one target in this process: times, peak, first losses."""
    device, opts, warmup = options.start(spec)
    cfg = harness.compose("train", [*spec["overrides"], *opts.trainer_overrides()])
    import ann.models  # noqa: F401 - imported before the base, so that it is not counted

    memory = harness.PeakMemory(device)
    torch.manual_seed(0)
    parts = build_training(cfg, harness.build_model(cfg).to(device), device)
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

        def step() -> None:
            steps.append(parts.step(batches))

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


def targets(args: argparse.Namespace) -> list[tuple[dict, list[str]]]:
    """Each target's entry (experiment, model, size, batch, label), resolved
    against the configs, and the Hydra overrides of its config."""
    chosen = CPU_TARGETS if args.device == "cpu" else CUDA_TARGETS
    if args.experiments:
        chosen = [(e, None, None) for e in args.experiments.split(",")]
    out = []
    for experiment, size, batch in chosen:
        size = args.size or size
        crop = "[{},{}]".format(*harness.parse_size(size)) if size else None
        keys = {
            "model": args.model,
            "dataset.train.transforms.crop_size": crop,
            "trainer.batch_size": args.batch or batch,
            "trainer.num_workers": args.workers,
        }
        overrides = [f"experiment={experiment}"]
        overrides += [f"{k}={v}" for k, v in keys.items() if v is not None]
        overrides += args.override
        cfg = harness.compose("train", overrides)
        (h, w), b = cfg.dataset.train.transforms.crop_size, int(cfg.trainer.batch_size)
        head = cfg.model.decode_head._target_.rsplit(".", 1)[-1]
        depth = cfg.model.backbone.get("depth", "?")
        width = cfg.model.backbone.get("base_channels", 64)
        depth = depth if width == 64 else f"{depth} w{width}"  # the demo's narrow ResNet
        entry = {"experiment": experiment, "model": args.model, "size": [h, w], "batch": b}
        out.append(({**entry, "label": f"{experiment}: {head} R-{depth} {b}x{h}x{w}"}, overrides))
    return out


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
    args, env, shared = options.parse(argv, __name__, __doc__, "iters", 3, OPTIONS)
    out = []
    header = ["target", "set", "iter ms", "img/s", *options.SET_COLUMNS, "loss@1", "Δloss rel"]
    rows = [[*header, "data"]]
    for entry, overrides in targets(args):
        job, label = {**shared, "overrides": overrides, "loader": False}, entry["label"]
        sets = options.run_sets(worker, job, args, label)
        out.append({**entry, "sets": sets})
        base = sets.get(options.BASELINE)
        rows += [_row(label, name, r, base, True) for name, r in sets.items()]
        # The loader row: the first set that ran (fp16 may be skipped on a CPU) on real
        # batches, whose loss is not comparable with the synthetic batch's.
        ran = [name for name, r in sets.items() if "skipped" not in r]
        if not args.no_loader and ran:
            spec = {**job, "set": ran[0], "loader": True}
            r = {"set": ran[0], **harness.run_worker(worker, spec, args.threads, args.timeout)}
            out[-1]["loader"] = r
            harness.log(label, "loader:", r)
            rows.append(_row(label, f"{ran[0]} + loader", r, base, False))
    note = "Δloss: first-iteration loss vs fp32's, same batch"
    options.print_sets_table(args, env, "train", f"{args.iters} iterations", note, rows)
    return {"config": vars(args), "env": env, "targets": out}
