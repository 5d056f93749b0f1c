"""The inference fast path: the same logits (to 1e-4 relative), sooner.

``evaluator.fast=true`` / ``Segmenter(..., fast=True)`` / ``tools/infer.py
fast=true`` and ``backend=torch|inductor|onnxruntime`` choose how an eval-mode
segmentor is run (docs/performance.md, "The inference fast path"):

- ``torch`` with ``fast``: an eval copy (:func:`inference_copy`; the trained
  module is never touched) with every BatchNorm folded into the convolution
  before it (:func:`fold_batchnorm`) and each ANN head's fusion fuse composed
  into its bottleneck conv (:mod:`ann.models.heads.merged`: 77 fewer GFLOP of
  651 for ANN R-50 at 512×1024), in channels_last where the CPU class
  profits (:data:`FAST_PLAN`);
- ``inductor``: that copy through ``torch.compile`` with freezing (inductor
  pre-packs the weights for oneDNN); compiles for minutes at R-50 sizes on
  two cores, so no CPU class picks it by itself;
- ``onnxruntime``: that copy exported with dynamic batch, height and width
  (:func:`ann.models.export.export_model`) and run by ONNX Runtime on the CPU.

Every path returns fp32 (B, K, H, W) logits for (B, 3, H, W) images.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ann.errors import ConfigError
from ann.models.heads.merged import merge_fusion_bottleneck
from ann.speed import cpu_class, forward_fn

log = logging.getLogger(__name__)

BACKENDS = ("torch", "inductor", "onnxruntime")
# What ``fast=true`` picks per CPU class (ann.speed.cpu_class): (channels_last,
# backend), from the side-by-side figures in docs/performance.md. With
# AVX-512, ONNX Runtime was the fastest in every interleaved round (ANN R-50
# 1x3x512x1024: 1.56x mmseg's eager and 1.1x the folded channels_last torch
# copy on a quiet machine, 1.8x and 1.4x on a busy one);
# its kernels cannot be limited to AVX2 (ONEDNN_MAX_CPU_ISA binds oneDNN
# only), so AVX2-only CPUs keep the measured torch path (channels_last costs
# a few per cent there). Without onnxruntime installed, the torch path.
FAST_PLAN: dict[str, tuple[bool, str]] = {
    "AMX": (True, "onnxruntime"),
    "AVX-512 BF16": (True, "onnxruntime"),
    "AVX-512 without BF16": (True, "onnxruntime"),
    "AVX2 only": (False, "torch"),
    "no AVX2": (False, "torch"),
}


def fast_plan(device: torch.device | str, backend: str | None) -> tuple[bool, str, str]:
    """(channels_last, backend, why) for ``fast=true`` on ``device``: the CPU
    class's :data:`FAST_PLAN` entry (``backend`` given: that backend instead);
    on a GPU channels_last and the torch backend."""
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(
            f"evaluator.backend must be null or one of {list(BACKENDS)}, got {backend!r}"
        )
    if torch.device(device).type != "cpu":
        return True, backend or "torch", f"{torch.device(device).type} device"
    klass = cpu_class()
    channels_last, chosen = FAST_PLAN[klass]
    why = f"CPU class {klass}"
    if backend is None and chosen == "onnxruntime" and not importlib.util.find_spec("onnxruntime"):
        chosen, why = "torch", f"{why}; onnxruntime is not installed"
    return channels_last, backend or chosen, why


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: Tensor) -> nn.Module:
    """An eval-mode deep copy of ``model`` whose BatchNorms are folded into the
    convolution that feeds them: ``w' = w * g / sqrt(v + eps)``, ``b' = (b - m)
    * g / sqrt(v + eps) + beta``, the BatchNorm replaced by ``nn.Identity``.

    Pairs are found by running ``example`` (B, 3, h, w) through the copy
    (:func:`_conv_bn_pairs`). Raises RuntimeError if the copy's logits differ
    from ``model``'s on ``example`` by more than 1e-4 relative.
    """
    net = copy.deepcopy(model).eval()
    modules = dict(net.named_modules())
    pairs = _conv_bn_pairs(net, example)
    for conv_name, bn_name in pairs:
        _fold_into(modules[conv_name], modules[bn_name])
        parent, _, attr = bn_name.rpartition(".")
        setattr(modules[parent] if parent else net, attr, nn.Identity())
    log.debug("folded %d BatchNorms into their convolutions", len(pairs))
    # Module hooks cannot see a conv output read by a plain function (an add,
    # a matmul) besides its BatchNorm; such a fold would show here.
    check_same_logits(model, net, example, "folding BatchNorm")
    return net


@torch.no_grad()
def inference_copy(model: nn.Module, example: Tensor) -> nn.Module:
    """The eval copy every fast backend runs: :func:`fold_batchnorm`, then
    each ANN head's fusion fuse composed into its bottleneck
    (:func:`~ann.models.heads.merged.merge_fusion_bottleneck`), checked on
    ``example`` (B, 3, h, w) to 1e-4 relative."""
    net = fold_batchnorm(model, example)
    if merge_fusion_bottleneck(net):
        check_same_logits(model, net, example, "merging the fusion into the bottleneck")
    return net


def check_same_logits(model: nn.Module, net: nn.Module, example: Tensor, what: str) -> None:
    """Raises RuntimeError if ``net``'s logits on ``example`` differ from
    ``model``'s by more than 1e-4 relative (``what``: the change, named)."""
    ref, out = model.eval()(example), net(example)
    ref, out = (ref["out"], out["out"]) if isinstance(ref, dict) else (ref, out)
    err = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    if err > 1e-4:
        raise RuntimeError(f"{what} changed the logits by {err:.1e} relative; use fast=false")


def _conv_bn_pairs(net: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """(conv name, BatchNorm name) pairs of ``net`` that fold safely, seen by
    running ``example`` through it with hooks: a BatchNorm whose input is, on
    every call, the very tensor one Conv2d returned, and a Conv2d whose output
    only that BatchNorm reads. A conv whose output is also read elsewhere (or by
    two BatchNorms) keeps its BatchNorm, so folding never changes what any
    other module sees."""
    produced: dict[int, str] = {}  # id(conv output) -> conv name, within one forward
    fed: dict[str, set[str | None]] = {}  # bn name -> conv names (None: not a conv output)
    readers: set[str] = set()  # convs whose output a non-BN leaf reads
    outputs: list[Tensor] = []  # kept alive so that ids stay unique during the forward
    names = {m: n for n, m in net.named_modules()}
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def conv_hook(module: nn.Module, args: tuple, out: Tensor) -> None:
        produced[id(out)] = names[module]
        outputs.append(out)

    def bn_hook(module: nn.Module, args: tuple) -> None:
        fed.setdefault(names[module], set()).add(produced.get(id(args[0])))

    def other_hook(module: nn.Module, args: tuple) -> None:
        readers.update(produced[id(a)] for a in args if isinstance(a, Tensor) and id(a) in produced)

    leaves = [m for m in net.modules() if not list(m.children()) and m not in bns]
    handles = [m.register_forward_hook(conv_hook) for m in net.modules() if type(m) is nn.Conv2d]
    handles += [m.register_forward_pre_hook(bn_hook) for m in bns]
    handles += [m.register_forward_pre_hook(other_hook) for m in leaves]
    try:
        net(example)
    finally:
        for h in handles:
            h.remove()
    by_conv: dict[str, list[str]] = {}
    for bn, sources in fed.items():
        if len(sources) == 1 and None not in sources:
            by_conv.setdefault(next(iter(sources)), []).append(bn)  # type: ignore[arg-type]
    return [(c, b[0]) for c, b in by_conv.items() if len(b) == 1 and c not in readers]


def _fold_into(conv: nn.Conv2d, bn: nn.Module) -> None:
    """``conv`` (C_out, C_in, k, k) rescaled and biased so that it returns
    what ``bn(conv(x))`` did with ``bn``'s running statistics."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


def _example() -> Tensor:
    """The seeded (1, 3, 64, 64) image the fast copies are built and checked on."""
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def onnxruntime_forward(model: nn.Module, threads: int | None = None) -> Callable[[Tensor], Tensor]:
    """``model`` exported to ONNX (dynamic batch, height and width; exact at
    every size, see :func:`~ann.models.export.export_model`) and run by ONNX
    Runtime's CPU provider with ``threads`` intra-op threads (default torch's).
    Returns a function (B, 3, H, W) -> fp32 (B, K, H, W) logits on the input's
    device. The export takes tens of seconds at R-50 sizes, once."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # an optional dependency
        raise ConfigError(
            "evaluator.backend=onnxruntime needs the onnxruntime package (pip install onnxruntime)"
        ) from exc
    from ann.models.export import export_model

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as tmp:
        # Traced small: the pyramid pooling takes its bins from the runtime shape.
        net = inference_copy(copy.deepcopy(model).eval().cpu(), _example())
        path = export_model(net, Path(tmp) / "model.onnx", 64, 64, dynamic=True)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(images: Tensor) -> Tensor:
        (logits,) = session.run(
            ["logits"], {"images": images.detach().float().cpu().contiguous().numpy()}
        )
        return torch.from_numpy(logits).to(images.device)

    return forward


def fast_forward(
    model: nn.Module,
    device: torch.device | str,
    backend: str | None = None,
    fast: bool = True,
    dtype: torch.dtype | None = None,
) -> Callable[[Tensor], Tensor]:
    """``model`` (eval mode, on ``device``) as a function (B, 3, H, W) ->
    fp32 (B, K, H, W) logits by ``backend`` (None: ``fast``'s choice for the
    CPU class, else torch eager); ``dtype`` an autocast dtype (torch and
    inductor only). Logs what it chose and why, in one line."""
    channels_last, chosen, why = (
        fast_plan(device, backend) if fast else (False, backend or "torch", "")
    )
    if chosen == "onnxruntime":
        if torch.device(device).type != "cpu":
            raise ConfigError("evaluator.backend=onnxruntime runs on the CPU only; set device=cpu")
        if dtype is not None:
            log.warning("evaluator.backend=onnxruntime runs fp32: evaluator.amp is ignored")
        log.info("inference: onnxruntime backend%s", f" ({why})" if why else "")
        return onnxruntime_forward(model)
    if not fast and chosen == "torch":
        return model
    net = inference_copy(model, _example().to(next(model.parameters()).device))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if chosen == "inductor":
        import torch._inductor.config as inductor_config

        # Freezing turns the weights into constants that inductor pre-packs.
        inductor_config.freezing = True
        net = torch.compile(net)
    log.info(
        "inference: BatchNorm folded, fusion merged, %s, %s backend (%s)",
        "channels_last" if channels_last else "NCHW",
        chosen,
        why or "fast",
    )

    return forward_fn(net, dtype, channels_last)


__all__ = [
    "BACKENDS",
    "FAST_PLAN",
    "fast_forward",
    "fast_plan",
    "fold_batchnorm",
    "inference_copy",
    "onnxruntime_forward",
]
