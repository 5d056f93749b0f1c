"""One training step of ``experiment=cityscapes_ann`` against mmsegmentation
1.2.2 itself (its ANN R-50-D8 Cityscapes config), in float64.

Run by tests/reference/test_against_mmseg.py in a subprocess whose PYTHONPATH holds
tests/, the repository and the pinned packages of tests/reference/mmseg-requirements.txt (installed there
with ``--no-deps``; mmcv-lite has no compiled ops, so ``mmcv.ops`` is a stub
whose functions raise: ANN uses none of them). Prints one JSON object of
relative differences, ours against mmseg: max|ours - mmseg| / max|mmseg|.

Both models get the same random weights and BN statistics through the
project's converter (mmseg zero-initialises the attention blocks' output
projections, which would leave the attention path untested), train mode with
the Dropout modules in eval mode (masks cannot match across code bases), one
batch of 2 × 3 × 129 × 129 (odd on purpose) with 10 % ignored pixels.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from helpers import compose_cfg
from reference.weights import randomise

NUM_CLASSES, IGNORE, SIZE, BATCH = 19, 255, 129, 2
MMCV_OPS = ("point_sample", "sigmoid_focal_loss", "CrissCrossAttention", "PSAMask")
MMCV_OPS += ("DeformConv2d", "ModulatedDeformConv2d")


def stub_mmcv_ops() -> None:
    """``mmcv.ops`` for mmcv-lite: the names mmseg imports, each raising."""

    def stub(name: str) -> Callable[..., None]:
        def raises(*args: object, **kwargs: object) -> None:
            raise RuntimeError(f"mmcv.ops.{name} is a stub here (mmcv-lite)")

        return raises

    ops = types.ModuleType("mmcv.ops")
    for name in MMCV_OPS:
        setattr(ops, name, stub(name))
    sys.modules["mmcv.ops"] = ops
    import mmcv

    mmcv.ops = ops


def build_mmseg() -> nn.Module:
    """mmseg's own config file for ANN R-50-D8 Cityscapes, BN for SyncBN."""
    import mmseg
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    configs = Path(mmseg.__file__).parent / ".mim" / "configs" / "ann"
    cfg = Config.fromfile(str(configs / "ann_r50-d8_4xb2-40k_cityscapes-512x1024.py")).model
    for part in (cfg.backbone, cfg.decode_head, cfg.auxiliary_head):
        part.norm_cfg = {"type": "BN", "requires_grad": True}
    cfg.pretrained = None
    return MODELS.build(cfg)


def build_ours(query_key_bn_updates: int) -> nn.Module:
    from hydra.utils import instantiate

    overrides = [
        "experiment=cityscapes_ann",
        "model.backbone.pretrained=null",
        f"model.decode_head.query_key_bn_updates={query_key_bn_updates}",
    ]
    return instantiate(compose_cfg(overrides).model)


def to_ours(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """mmseg names -> ours through the project's converter."""
    from ann.convert.mmseg import from_mmseg

    return from_mmseg(dict(state), {}, Path("mmseg-1.2.2")).model


def rel(ours: Tensor, ref: Tensor) -> float:
    scale = ref.abs().max().item()
    diff = (ours.double() - ref.double()).abs().max().item()
    return diff / scale if scale else diff


def dropout_off(model: nn.Module) -> nn.Module:
    model.double().train()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    return model


def main() -> None:
    stub_mmcv_ops()
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    torch.set_num_threads(2)
    mm = build_mmseg()
    randomise(mm)  # BN counters at 1000
    # Copies: the converter's tensors share storage with mm's (integer BN
    # counters would otherwise count mm's step too).
    start = {k: v.clone() for k, v in to_ours(mm.state_dict()).items()}
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(BATCH, 3, SIZE, SIZE, generator=gen, dtype=torch.float64)
    label = torch.randint(0, NUM_CLASSES, (BATCH, SIZE, SIZE), generator=gen)
    label[torch.rand(BATCH, SIZE, SIZE, generator=gen) < 0.1] = IGNORE
    meta = {"img_shape": (SIZE, SIZE), "ori_shape": (SIZE, SIZE), "pad_shape": (SIZE, SIZE)}

    samples = []
    for i in range(BATCH):
        sample = SegDataSample(metainfo=meta)
        sample.gt_sem_seg = PixelData(data=label[i][None].clone())
        samples.append(sample)
    mm_losses = dropout_off(mm).loss(x, samples)
    (mm_losses["decode.loss_ce"] + mm_losses["aux.loss_ce"]).backward()
    # The converter takes a whole state dict: gradients in the parameters'
    # places, buffers as they are (not compared as gradients).
    grads_by_mm_name = {
        n: torch.zeros_like(p) if p.grad is None else p.grad
        for n, p in mm.named_parameters(remove_duplicate=False)
    }
    mm_grads = to_ours(mm.state_dict() | grads_by_mm_name)
    mm_after = to_ours(mm.state_dict())
    with torch.no_grad():
        mm_logits = mm.eval().encode_decode(x, [meta] * BATCH)

    # mmseg's weight_reduce_loss divides by (pixels + float32 eps), ours by pixels.
    out: dict[str, float | int | str] = {"eps_over_pixels": 1.1920929e-07 / label.numel()}
    for updates in (2, 1):
        ours = build_ours(updates)
        ours.load_state_dict(start, strict=True)
        losses = ours.compute_loss(dropout_off(ours)(x), label)
        losses["loss"].backward()
        after = ours.state_dict()
        qk = "decode_head.context.query_key.1."
        tag = f"qk{updates}"
        out[f"{tag}_qk_bn_running_mean"] = rel(
            after[qk + "running_mean"], mm_after[qk + "running_mean"]
        )
        out[f"{tag}_qk_bn_counter"] = int(after[qk + "num_batches_tracked"])
        if updates != 2:
            continue
        out["decode_loss"] = rel(losses["loss_main"].detach(), mm_losses["decode.loss_ce"].detach())
        out["aux_loss"] = rel(
            ours.aux_weight * losses["loss_aux"].detach(), mm_losses["aux.loss_ce"].detach()
        )
        # A bias feeding a train-mode BN has an exact gradient of 0: both sides
        # hold rounding noise there, so those are measured against the typical scale.
        grads = {n: p.grad for n, p in ours.named_parameters()}
        scales = sorted(mm_grads[n].abs().max().item() for n in grads)
        typical = scales[len(scales) // 2]
        live = [n for n in grads if mm_grads[n].abs().max().item() > 1e-9 * typical]
        worst = max(live, key=lambda n: rel(grads[n], mm_grads[n]))
        out["grads"], out["grads_worst"] = rel(grads[worst], mm_grads[worst]), worst
        dead = [n for n in grads if n not in live]
        out["dead_grads_vs_typical"] = max((grads[n].abs().max().item() for n in dead), default=0.0)
        out["dead_grads_vs_typical"] /= typical
        out["grad_tensors"], out["dead_grad_tensors"] = len(grads), len(dead)
        stats = [k for k in after if k.endswith(("running_mean", "running_var"))]
        out["bn_stats"] = max(rel(after[k], mm_after[k]) for k in stats)
        counters = [k for k in after if k.endswith("num_batches_tracked")]
        out["bn_counter_mismatches"] = sum(int(after[k]) != int(mm_after[k]) for k in counters)
        out["mmseg_qk_bn_counter"] = int(mm_after[qk + "num_batches_tracked"])
        with torch.no_grad():
            out["eval_logits"] = rel(ours.eval()(x), mm_logits)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
