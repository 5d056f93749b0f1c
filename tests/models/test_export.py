"""ONNX export: onnxruntime against PyTorch, static and with dynamic H/W at
sizes whose feature maps the pyramid bins do not divide."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from ann.commands.export import compare_onnx, export_model, export_onnx
from ann.engine.checkpoint import save_checkpoint
from ann.errors import ConfigError
from ann.models.heads import AFNB, APNB
from helpers import compose_cfg

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


class _Blocks(nn.Module):
    """AFNB + APNB on a strided input: the pooling is what a dynamic export can get wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.afnb = AFNB(8, 8, 8, 4, 4)
        self.apnb = APNB(8, 8, 4, 4)
        for m in (self.afnb.out_proj, self.apnb.out_proj):
            nn.init.normal_(m.weight)  # non-zero Wo, so the attention shows in the output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stem(x)
        return self.apnb(self.afnb(f, f))


def test_blocks_dynamic_export_exact_at_other_sizes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _Blocks().eval()
    path = export_model(model, tmp_path / "blocks.onnx", 32, 32, dynamic=True, optimize=False)
    # Trace size 8×8 features; 9×11 and 13×7 are divided by none of the bins 3, 6, 8.
    diffs = compare_onnx(model, path, [(32, 32), (36, 44), (52, 28)], batch=2)
    assert max(diffs.values()) < 1e-4, diffs


def _checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = instantiate(compose_cfg(["experiment=demo"]).model)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.weight.abs().sum() == 0:
            nn.init.normal_(m.weight, std=0.05)  # non-zero Wo
    path = tmp_path / "ckpt.pth"
    save_checkpoint({"model": model.state_dict(), "config": {}}, path)
    return path


def _export_cfg(tmp_path: Path, ckpt: Path, *extra: str):
    cfg = compose_cfg(
        [
            "experiment=demo",
            f"checkpoint={ckpt}",
            f"output_dir={tmp_path / 'out'}",
            "export.height=64",
            "export.width=64",
            *extra,
        ],
        "export",
    )
    return cfg


@pytest.mark.slow
def test_export_tool_dynamic_small_model(tmp_path: Path) -> None:
    cfg = _export_cfg(
        tmp_path,
        _checkpoint(tmp_path),
        "export.dynamic=true",
        "export.check_sizes=[[72,88],[104,56]]",
    )
    path = export_onnx(cfg)
    assert path == tmp_path / "out" / "model.onnx" and path.is_file()
    report = (tmp_path / "out" / "export.json").read_text()
    assert '"72x88"' in report and '"104x56"' in report


@pytest.mark.slow
def test_export_tool_static_small_model(tmp_path: Path) -> None:
    cfg = _export_cfg(tmp_path, _checkpoint(tmp_path), "export.opset=17")
    path = export_onnx(cfg)  # raises if onnxruntime differs by more than 1e-4
    import onnx

    assert onnx.load(str(path)).opset_import[0].version >= 17
    assert (tmp_path / "out" / "export.json").is_file()


def test_export_refuses_old_opset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="opset"):
        export_model(nn.Conv2d(3, 2, 1), tmp_path / "x.onnx", 8, 8, opset=13)
