"""python tools/benchmark.py train [--experiments demo,cityscapes_ann] [--model M]
[--size HxW] [--batch B] [--sets fp32,bf16,fp32+cl,bf16+cl] [--iters N] [--warmup N]
[--device cpu|cuda] [--workers W] [--no-loader] [--override KEY=VALUE ...]

Full training iterations of an experiment's model at its crop size and batch,
for option sets side by side (ann.benchmarks.options: fp32 / bf16 / fp16
autocast, +cl channels_last, +compile torch.compile): the trainer's own
``Trainer.train_step`` (forward under autocast, loss with the auxiliary term,
backward, GradScaler for fp16, optimizer and poly-schedule step), with the
optimizer built from the experiment's config as the trainer builds it (SGD,
momentum 0.9, weight decay 5e-4, parameter groups), random initial weights
(no ImageNet download; the speed is the same).

Each set runs in a fresh process on the same seeded synthetic batch, placed on
the device beforehand so that data loading is excluded: median iteration time
of ``--iters`` after ``--warmup`` (compile sets at least 2: the first compiles
forward and backward, and its time is reported apart as "compile s", a cold
compile unless ``--compile-cache`` lets torch.compile use its disk caches), images/s,
peak memory (ann.benchmarks.options) and the loss of the first iteration
(same weights, batch and dropout seed in every set; compile sets draw dropout
masks with inductor's ``fallback_random``, as eager does) against fp32's.
One more row runs the first set of ``--sets`` that was not skipped with the
real training loader (the trainer's sampler and ``build_loader``, the
experiment's worker count): the experiment's dataset if it is on disk, else
synthetic PNGs at the dataset's scale through its training transforms.

Defaults: on CPU, ``demo`` (ANN R-18, 8x64x64) and ``cityscapes_ann`` at
2x257x257 (ANN R-50), sets fp32,bf16,fp16,fp32+cl,bf16+cl (fp16 is skipped,
with the reason in the table, where oneDNN has no native fp16), 3 iterations
after 1 warm-up: a few minutes on 2 cores. On CUDA, the recipes:
``cityscapes_ann`` (R-50, 2x512x1024) and ``cityscapes_ann_r101_769`` (R-101,
2x769x769), all 12 sets, 10 iterations after 3 warm-up.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image

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

if TYPE_CHECKING:
    from ann.engine.trainer import Trainer

CPU_TARGETS = (("demo", None, None), ("cityscapes_ann", "257x257", 2))
CUDA_TARGETS = (("cityscapes_ann", None, None), ("cityscapes_ann_r101_769", None, None))
CPU_SETS = "fp32,bf16,fp16,fp32+cl,bf16+cl"


def target_config(spec: dict) -> DictConfig:
    """The experiment's config with the benchmark's model, crop, batch and overrides."""
    extra = [f"model={spec['model']}"] if spec.get("model") else []
    if spec.get("size"):
        h, w = spec["size"]
        extra.append(f"dataset.train.transforms.crop_size=[{h},{w}]")
    if spec.get("batch"):
        extra.append(f"trainer.batch_size={spec['batch']}")
    if spec.get("workers") is not None:
        extra.append(f"trainer.num_workers={spec['workers']}")
    return compose_train(spec["experiment"], [*extra, *spec.get("overrides", [])])


def build_trainer(
    cfg: DictConfig, device: torch.device, opts: OptionSet, compile_mode: str
) -> Trainer:
    """A :class:`~ann.engine.trainer.Trainer` with the model, optimizer,
    schedule and scaler that ``Trainer.__init__`` builds, but no run directory,
    datasets or evaluator, so that its own ``train_step`` and ``_loader`` run."""
    from ann.engine.optim import build_optimizer
    from ann.engine.trainer import Trainer
    from ann.models.pretrained import without_pretrained
    from ann.speed import configure_backends, prepare_model

    tcfg = cfg.trainer
    trainer = object.__new__(Trainer)
    trainer.cfg, trainer.tcfg, trainer.device = cfg, tcfg, device
    configure_backends(device, tcfg.cudnn_benchmark, tcfg.tf32)
    model = instantiate(without_pretrained(cfg.model)).to(device)
    trainer.channels_last = opts.channels_last
    trainer.model = prepare_model(model, channels_last=opts.channels_last)
    # As Trainer.__init__: the paramwise options go to build_optimizer, the rest to SGD.
    paramwise = OmegaConf.to_container(cfg.optimizer.get("paramwise", {}) or {})
    opt_cfg = OmegaConf.masked_copy(cfg.optimizer, [k for k in cfg.optimizer if k != "paramwise"])
    trainer.optimizer = build_optimizer(instantiate(opt_cfg, _partial_=True), model, **paramwise)
    trainer.scheduler = instantiate(
        cfg.scheduler, optimizer=trainer.optimizer, max_iters=tcfg.max_iters
    )
    trainer.amp_dtype = opts.dtype
    trainer.scaler = torch.amp.GradScaler(device.type, enabled=opts.dtype == torch.float16)
    trainer.accumulate = int(tcfg.get("accumulate", 1))
    trainer.start_iter = 0
    trainer.model = prepare_model(trainer.model, compile=opts.compile, compile_mode=compile_mode)
    trainer.model.train()
    return trainer


def synthetic_batch(cfg: DictConfig, size: tuple[int, int], device: torch.device) -> dict:
    """A seeded batch already on the device: image (B, 3, H, W) float32 ~ N(0, 1)
    (normalised pixels), mask (B, H, W) int64 uniform over the classes."""
    g = torch.Generator().manual_seed(0)
    b, (h, w), k = int(cfg.trainer.batch_size), size, int(cfg.dataset.num_classes)
    image = torch.randn(b, 3, h, w, generator=g)
    mask = torch.randint(0, k, (b, h, w), generator=g)
    return {"image": image.to(device), "mask": mask.to(device)}


def loader_dataset(cfg: DictConfig, tmp: Path) -> tuple[torch.utils.data.Dataset, str]:
    """The experiment's training set, or (when it is not on disk) 8 synthetic
    street-like PNG pairs at the dataset's scale through its training
    transforms; with a description for the table."""
    from ann.benchmarks.data import make_inputs
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
    for sub in ("images/train", "masks/train"):
        (tmp / sub).mkdir(parents=True)
    for i, (image, label) in enumerate(make_inputs(8, w, h)):
        Image.fromarray(image).save(tmp / "images/train" / f"{i}.png")
        mask = np.where(label == 255, ignore, label % k).astype(np.uint8)
        Image.fromarray(mask).save(tmp / "masks/train" / f"{i}.png")
    dataset = FolderDataset(
        tmp, "train", [str(i) for i in range(k)], transforms=instantiate(tcfg), ignore_index=ignore
    )
    return dataset, f"synthetic {w}x{h} PNGs ({cfg.dataset.name} {missing})"


def worker(spec: dict) -> dict:
    """One option set of one target in this process: times, peak, first losses."""
    from ann.engine.trainer import Trainer

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    opts = OptionSet.parse(spec["set"])
    if opts.compile:
        from torch._inductor import config as inductor_config

        cold_compile(spec.get("compile_cache", False))
        # Dropout masks from the eager RNG, so that the first loss matches fp32's.
        inductor_config.fallback_random = True
    cfg = target_config(spec)
    import ann.models  # noqa: F401 - imported before the base, so that it is not counted

    memory = PeakMemory(device)
    size = tuple(cfg.dataset.train.transforms.crop_size)
    torch.manual_seed(0)
    trainer = build_trainer(cfg, device, opts, spec["compile_mode"])
    with tempfile.TemporaryDirectory() as tmp:
        if spec["loader"]:
            trainer.train_set, data = loader_dataset(cfg, Path(tmp))
            n = int(cfg.trainer.num_workers)
            data += f", {n} worker{'' if n == 1 else 's'}"
            batches = iter(Trainer._loader(trainer))
        else:
            data, batches = "synthetic", itertools.repeat(synthetic_batch(cfg, size, device))
        warmup = max(spec["warmup"], 2 if opts.compile else 1)
        torch.manual_seed(0)  # the same dropout masks in every set
        times, waits, first = [], [], {}
        for i in range(warmup + spec["iters"]):
            start = time.perf_counter()
            losses, wait = Trainer.train_step(trainer, batches)
            sync(device)
            times.append(time.perf_counter() - start)
            waits.append(wait)
            if i == 0:
                first = {k: float(v) for k, v in losses.items()}
        memory.reset()  # one more iteration, for the peak alone
        Trainer.train_step(trainer, batches)
        sync(device)
        peak = memory.peak()
        del batches  # stops the loader's workers before the folder goes
    batch = int(cfg.trainer.batch_size)
    return {
        "data": data,
        "size": list(size),
        "batch": batch,
        **timings(times, warmup, batch, peak, opts.compile),
        "data_wait_s": statistics.median(waits[warmup:]),
        "first_loss": first,
    }


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmark.py train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(p)
    p.add_argument("--experiments", help="comma list of configs/experiment names")
    p.add_argument("--model", help="a configs/model name instead of the experiments' own")
    p.add_argument("--size", help="HxW crop for every target (default: the experiment's)")
    p.add_argument("--batch", type=int, help="batch for every target (default: the experiment's)")
    p.add_argument("--iters", type=int, help="timed iterations (CPU 3, CUDA 10)")
    p.add_argument("--warmup", type=int, help="untimed first iterations (CPU 1, CUDA 3)")
    p.add_argument("--workers", type=int, help="loader row: workers (default: the experiment's)")
    p.add_argument("--no-loader", action="store_true", help="leave out the real-loader row")
    args = p.parse_args(argv)
    on_cpu = args.device == "cpu"
    args.sets = args.sets or (CPU_SETS if on_cpu else "all")
    args.iters = args.iters or (3 if on_cpu else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if on_cpu else 3)
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (the peak is taken after the warm-up)")
    return args


def targets(args: argparse.Namespace) -> list[dict]:
    """The (experiment, model, size, batch) specs to run, resolved against the configs."""
    if args.experiments:
        chosen = [(e, None, None) for e in args.experiments.split(",")]
    else:
        chosen = list(CPU_TARGETS if args.device == "cpu" else CUDA_TARGETS)
    specs = []
    for experiment, size, batch in chosen:
        size = args.size or size
        spec = {
            "experiment": experiment,
            "model": args.model,
            "size": list(parse_size(size)) if size else None,
            "batch": args.batch or batch,
            "workers": args.workers,
            "overrides": args.override,
        }
        cfg = target_config(spec)
        spec["size"] = list(cfg.dataset.train.transforms.crop_size)
        spec["batch"] = int(cfg.trainer.batch_size)
        head = cfg.model.decode_head._target_.rsplit(".", 1)[-1]
        name = f"{head} R-{cfg.model.backbone.get('depth', '?')}"
        spec["label"] = f"{experiment}: {name} {spec['batch']}x{spec['size'][0]}x{spec['size'][1]}"
        specs.append(spec)
    return specs


def _row(label: str, name: str, r: dict, base: dict | None, loss_ok: bool) -> list[str]:
    if "skipped" in r:
        return [label, name, "-", "-", "-", "-", "-", "-", "-", "-", r["skipped"]]
    base = base if base and "skipped" not in base else None
    loss = r["first_loss"].get("loss")
    delta = "-"
    if loss_ok and base is not None:
        r["loss_rel_diff"] = (loss - base["first_loss"]["loss"]) / base["first_loss"]["loss"]
        delta = f"{r['loss_rel_diff']:+.1e}"
    r["speedup"] = base["time_s"] / r["time_s"] if base else None
    has_peak = base is not None and base["peak_bytes"] > 0
    r["memory_ratio"] = r["peak_bytes"] / base["peak_bytes"] if has_peak else None
    compile_s = f"{r['compile_s']:.0f}" if r["compile_s"] is not None else "-"
    return [
        label, name, f"{r['time_s'] * 1000:.0f}", f"{r['images_per_s']:.2f}",
        ratio(base and base["time_s"], r["time_s"]),
        f"{r['peak_bytes'] / 2**20:.0f}", ratio(r["peak_bytes"], base and base["peak_bytes"]),
        compile_s, f"{loss:.4f}", delta, r["data"],
    ]  # fmt: skip


def main(argv: list[str]) -> dict:
    """Runs every (target, set), prints the table, returns {"config", "env", "targets"}."""
    args = parse(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return {}
    sets = parse_sets(args.sets)
    env = environment(args.device, args.threads)
    shared = {"device": args.device, "threads": args.threads, "iters": args.iters,
              "warmup": args.warmup, "compile_mode": args.compile_mode,
              "compile_cache": args.compile_cache}  # fmt: skip
    out = []
    for spec in targets(args):
        results: dict = {}
        for opts in sets:
            skip = cpu_fp16_skip(opts, args.device, args.cpu_fp16)
            job = {**spec, **shared, "set": opts.name, "loader": False}
            r = {"skipped": skip} if skip else run_worker(__name__, job, args.threads, args.timeout)
            results[opts.name] = r
            print(f"  {spec['label']} {opts.name}: {r}", file=sys.stderr, flush=True)
        entry = {k: spec[k] for k in ("experiment", "model", "size", "batch", "label")}
        entry["sets"] = results
        # The loader row: the first set that ran (fp16 may be skipped on a CPU).
        ran = [name for name, r in results.items() if "skipped" not in r]
        if not args.no_loader and ran:
            job = {**spec, **shared, "set": ran[0], "loader": True}
            entry["loader"] = {"set": ran[0], **run_worker(__name__, job, args.threads)}
            print(f"  {spec['label']} loader: {entry['loader']}", file=sys.stderr, flush=True)
        out.append(entry)
    env["loadavg_end"] = list(os.getloadavg())
    header = ["target", "set", "iter ms", "img/s", "speedup", "peak MiB", "mem vs fp32",
              "compile s", "loss@1", "Δloss rel", "data"]  # fmt: skip
    rows = [header]
    for entry in out:
        base = entry["sets"].get(BASELINE)
        for name, r in entry["sets"].items():
            rows.append(_row(entry["label"], name, r, base, loss_ok=True))
        if "loader" in entry:
            # Real batches: its loss is not comparable with the synthetic batch's.
            name = f"{entry['loader']['set']} + loader"
            rows.append(_row(entry["label"], name, entry["loader"], base, loss_ok=False))
    print(
        f"train: {args.device}, {describe(env)}; median of {args.iters} iterations after "
        f"{args.warmup} warm-up (compile sets at least 2); ratios vs {BASELINE} eager "
        f"(speedup: higher is faster; mem: peak / fp32's); Δloss: first-iteration loss vs "
        f"fp32's, same batch"
    )
    print_table(rows)
    return {"config": {k: v for k, v in vars(args).items() if k != "worker"}, "env": env,
            "targets": out}  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
