"""The speed options and the CUDA code paths on a GPU: marked ``cuda``, left
out of ``make test``; ``python -m pytest -m cuda`` (or scripts/gpu_check.sh)
runs them on a CUDA machine.

``ANN_TEST_DEVICE=cpu python -m pytest -m cuda`` runs the same tests on the CPU
(CUDA hidden from the trainer, SyncBatchNorm skipped) to check the tests
themselves where no GPU is at hand.

Every run trains the small demo model on the tiny shapes data and is compared
with the same run in fp32 on the CPU (dropout off, TF32 off, cuDNN's autotuner
off, so that only the arithmetic differs). Tolerances, relative, on the first
training loss (one forward pass, before any update) and on all four:

- fp32 on CUDA, channels_last, torch.compile: 1e-4 and 2e-2;
- fp16 autocast with the GradScaler: 2e-3 and 5e-2;
- bf16 autocast: 1e-2 and 5e-2.

The later losses get the looser bound because this model, from scratch at
batch 2, amplifies rounding: on the CPU, channels_last alone (another summation
order, same forward to 1e-7) moves some gradients by 9 % and the fourth loss by
0.3 %; fp16 moved it by 1.5 %, bf16 and compile by 0.7 %. A broken update moves
it by far more (the loss falls by 25 % over the four iterations).

Evaluation in fp32 on CUDA gives exactly the CPU confusion matrix; with bf16
and channels_last at most 1 % of the pixels move. A run resumed on CUDA from
its iteration-2 checkpoint ends within 1e-4 (relative) of the uninterrupted
run (the CUDA RNG state restored: dropout masks equal).
"""

from __future__ import annotations

import copy
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
from hydra.utils import instantiate
from torch import nn

from ann.commands.train import train
from ann.engine.checkpoint import load_checkpoint, load_model_weights
from ann.engine.trainer import Trainer
from ann.models.pretrained import without_pretrained
from helpers import checkpoint_overrides, compose_cfg, tiny_train_overrides

DEVICE = os.environ.get("ANN_TEST_DEVICE", "cuda")
if DEVICE not in ("cuda", "cpu"):
    raise ValueError(f"ANN_TEST_DEVICE must be cuda or cpu, got {DEVICE!r}")
ON_CUDA = DEVICE == "cuda"

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        ON_CUDA and not torch.cuda.is_available(),
        reason="needs CUDA (ANN_TEST_DEVICE=cpu runs these tests on the CPU)",
    ),
]

# (first loss, all losses), relative.
FP32_REL = (1e-4, 2e-2)
FP16_REL = (2e-3, 5e-2)
BF16_REL = (1e-2, 5e-2)

# Only the arithmetic may differ from the CPU reference: no dropout (CUDA draws
# other masks), no TF32, no autotuned convolutions; validation only at the end.
EXACT = (
    "model.decode_head.block_dropout=0",
    "model.decode_head.dropout=0",
    "model.aux_head.dropout=0",
    "trainer.tf32=false",
    "trainer.cudnn_benchmark=false",
    "trainer.val_interval=100",
)


@contextmanager
def _on(device: str) -> Iterator[None]:
    """Runs the trainer and evaluator on ``device`` ("cpu" hides CUDA: they pick
    it whenever it is there) and restores the process-wide backend flags that
    the trainer sets (TF32, cuDNN's autotuner, deterministic algorithms)."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        with pytest.MonkeyPatch.context() as mp:
            if device == "cpu":
                mp.setattr(torch.cuda, "is_available", lambda: False)
            yield
    finally:
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic,
            enabled,
            warn_only,
        ) = saved
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@pytest.fixture(autouse=True)
def _on_device() -> Iterator[None]:
    with _on(DEVICE):
        yield


def _exact_arithmetic() -> None:
    """fp32 matmuls and convolutions in full fp32, the same algorithm every run."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def _tb_losses(run_dir: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [e.value for e in events.Scalars("train/loss")]


def _overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return tiny_train_overrides(root, out, *EXACT, *extra)


def _assert_close(run_dir: Path, reference_dir: Path, rel: tuple[float, float]) -> None:
    """The training losses of ``run_dir`` against the reference's: finite, the
    first within ``rel[0]``, all within ``rel[1]``."""
    losses, reference = _tb_losses(run_dir), _tb_losses(reference_dir)
    assert len(losses) == len(reference) == 4, (losses, reference)
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[0] == pytest.approx(reference[0], rel=rel[0]), (losses, reference)
    assert losses == pytest.approx(reference, rel=rel[1]), (losses, reference)


@pytest.fixture(scope="module")
def cpu_reference(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 CPU run the others are compared with (4 iterations)."""
    out = tmp_path_factory.mktemp("cpu_fp32")
    with _on("cpu"):
        train(compose_cfg(_overrides(shapes_root, out)))
    return out


@pytest.fixture(scope="module")
def trained_checkpoint(shapes_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained on DEVICE for 40 iterations: far enough that its
    predictions are not near-ties between classes (after 4 iterations most
    pixels' top two probabilities lie within 1e-2, some within 1e-6)."""
    out = tmp_path_factory.mktemp("trained")
    overrides = ["trainer.max_iters=40", "trainer.batch_size=4", "optimizer.lr=0.01"]
    with _on(DEVICE):
        train(compose_cfg(tiny_train_overrides(shapes_root, out, *overrides, *EXACT)))
    return out / "checkpoints/last.pth"


def test_fp32_on_device_matches_cpu(shapes_root: Path, tmp_path: Path, cpu_reference: Path) -> None:
    train(compose_cfg(_overrides(shapes_root, tmp_path)))
    _assert_close(tmp_path, cpu_reference, FP32_REL)


def test_fp16_autocast_with_grad_scaler(
    shapes_root: Path, tmp_path: Path, cpu_reference: Path
) -> None:
    train(
        compose_cfg(_overrides(shapes_root, tmp_path, "trainer.amp=true", "trainer.amp_dtype=fp16"))
    )
    _assert_close(tmp_path, cpu_reference, FP16_REL)
    scaler = torch.load(tmp_path / "checkpoints/last.pth", weights_only=True)["scaler"]
    # An enabled GradScaler keeps a finite, positive loss scale in the checkpoint.
    assert scaler, "fp16 training saved no GradScaler state"
    assert 0 < scaler["scale"] < math.inf


def test_bf16_autocast(shapes_root: Path, tmp_path: Path, cpu_reference: Path) -> None:
    train(
        compose_cfg(_overrides(shapes_root, tmp_path, "trainer.amp=true", "trainer.amp_dtype=bf16"))
    )
    _assert_close(tmp_path, cpu_reference, BF16_REL)
    # bf16 has fp32's range: no loss scaling, so the scaler is disabled and saves nothing.
    assert torch.load(tmp_path / "checkpoints/last.pth", weights_only=True)["scaler"] == {}


def test_channels_last(shapes_root: Path, tmp_path: Path, cpu_reference: Path) -> None:
    trainer = Trainer(compose_cfg(_overrides(shapes_root, tmp_path, "trainer.channels_last=true")))
    weights = [m.weight for m in trainer.model.modules() if isinstance(m, nn.Conv2d)]
    spatial = [w for w in weights if w.shape[-1] > 1]
    assert spatial and all(w.is_contiguous(memory_format=torch.channels_last) for w in spatial)
    assert not all(w.is_contiguous() for w in spatial)
    trainer.run()
    _assert_close(tmp_path, cpu_reference, FP32_REL)


def test_compile(shapes_root: Path, tmp_path: Path, cpu_reference: Path) -> None:
    torch._dynamo.reset()
    cfg = compose_cfg(_overrides(shapes_root, tmp_path, "trainer.compile=true"))
    trainer = Trainer(cfg)
    assert hasattr(trainer.model, "_orig_mod"), "trainer.compile=true did not compile the model"
    trainer.run()
    _assert_close(tmp_path, cpu_reference, FP32_REL)
    # Checkpoints hold the plain module's keys, loadable without compiling.
    keys = torch.load(tmp_path / "checkpoints/last.pth", weights_only=True)["model"].keys()
    assert not any("_orig_mod" in k for k in keys)


def test_sync_batchnorm_in_one_process_group(tmp_path: Path) -> None:
    """SyncBatchNorm (what DDP training on CUDA converts to) in a process group
    of one: the converted model computes what the plain one does."""
    if not ON_CUDA:
        pytest.skip("SyncBatchNorm runs on CUDA only")
    _exact_arithmetic()
    cfg = compose_cfg(["experiment=demo", *EXACT[:3]])
    torch.manual_seed(0)
    plain = instantiate(without_pretrained(cfg.model)).cuda().train()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(plain))
    num_bn = sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert num_bn > 0
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == num_bn
    assert not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
        for m in synced.modules()
    )

    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 64, 64, generator=generator).cuda()
    masks = torch.randint(0, 5, (2, 64, 64), generator=generator).cuda()
    store = torch_dist.FileStore(str(tmp_path / "store"), 1)
    torch_dist.init_process_group("nccl", store=store, rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(synced, device_ids=[torch.cuda.current_device()])
        loss_synced = synced.compute_loss(ddp(images), masks)["loss"]
        loss_synced.backward()
        torch.cuda.synchronize()
    finally:
        torch_dist.destroy_process_group()
    loss_plain = plain.compute_loss(plain(images), masks)["loss"]
    loss_plain.backward()
    assert math.isfinite(loss_synced.item())
    assert loss_synced.item() == pytest.approx(loss_plain.item(), rel=1e-5)
    for (name, a), b in zip(plain.named_parameters(), synced.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5, msg=name)
    for (name, a), b in zip(plain.named_buffers(), synced.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)


def _confusion(cfg, ckpt: Path, device: str, options: dict) -> torch.Tensor:
    state = load_checkpoint(ckpt)
    model = instantiate(without_pretrained(cfg.model))
    load_model_weights(model, state, ckpt)
    evaluator = instantiate(cfg.evaluator, **options)
    evaluator.evaluate(
        model.to(device).eval(), instantiate(cfg.dataset.val), device, progress=False
    )
    return evaluator.last_confusion


@pytest.mark.parametrize(
    "options",
    [{}, {"amp": True, "amp_dtype": "bf16", "channels_last": True}],
    ids=["fp32", "bf16_channels_last"],
)
def test_evaluation_on_device_matches_cpu(
    shapes_root: Path, tmp_path: Path, trained_checkpoint: Path, options: dict
) -> None:
    """The same checkpoint evaluated on the CPU (fp32) and on DEVICE: in fp32 the
    confusion matrices are equal, count for count; with bf16 and channels_last
    at most 1 % of the pixels change class."""
    _exact_arithmetic()
    ckpt = trained_checkpoint
    cfg = compose_cfg(checkpoint_overrides(shapes_root, ckpt, tmp_path), "eval")
    with _on("cpu"):
        on_cpu = _confusion(cfg, ckpt, "cpu", {})
    on_device = _confusion(cfg, ckpt, DEVICE, options)
    assert on_device.device.type == "cpu" and on_device.dtype == torch.int64
    assert on_device.sum() == on_cpu.sum() > 0
    if not options:
        assert torch.equal(on_device, on_cpu), (on_device, on_cpu)
    else:
        moved = int((on_device - on_cpu).abs().sum()) // 2
        assert moved <= 0.01 * int(on_cpu.sum()), (moved, on_device, on_cpu)


def test_resume_on_device(shapes_root: Path, tmp_path: Path) -> None:
    """Resumed at iteration 2 of 4 (dropout on: the CUDA RNG state must come
    back with the checkpoint), the run ends where the uninterrupted one does."""
    extra = [
        "trainer.max_iters=4",
        "trainer.ckpt_interval=2",
        "trainer.val_interval=2",
        "trainer.deterministic=true",
        "trainer.cudnn_benchmark=false",
        "trainer.tf32=false",
    ]
    full = tmp_path / "full"
    train(compose_cfg(tiny_train_overrides(shapes_root, full, *extra)))
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(full / "checkpoints/iter_0000002.pth", resumed / "checkpoints/last.pth")
    train(compose_cfg(tiny_train_overrides(shapes_root, resumed, *extra)))
    assert "at iteration 2" in (resumed / "train.log").read_text()
    a = torch.load(full / "checkpoints/last.pth", weights_only=True)
    b = torch.load(resumed / "checkpoints/last.pth", weights_only=True)
    assert a["iteration"] == b["iteration"] == 4
    assert ("cuda" in a["rng"]) == ON_CUDA
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-4, atol=1e-6, msg=k)
    assert _tb_losses(resumed) == pytest.approx(_tb_losses(full)[2:], rel=1e-4)
