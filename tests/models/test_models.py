"""The ANN model: full-size forward/backward, block shapes, losses."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from ann.models.heads import AFNB, APNB, ANNHead, NonLocal2d
from ann.models.heads.attention import attend
from helpers import compose_cfg


@pytest.mark.parametrize("model", ["ann_r50", "ann_r101"])
def test_full_size_ann_forward_backward(model: str) -> None:
    cfg = compose_cfg([f"model={model}", "dataset=cityscapes", "model.backbone.pretrained=null"])
    net = instantiate(cfg.model)
    assert isinstance(net.decode_head, ANNHead)
    x = torch.randn(1, 3, 129, 129)
    net.train()
    # BatchNorm needs more than one value per channel at the 1×1 pyramid bin.
    x = torch.cat([x, x.flip(-1)])
    out = net(x)
    assert out["out"].shape == (2, 19, 129, 129)
    assert out["aux"].shape == (2, 19, 129, 129)
    target = torch.randint(0, 19, (2, 129, 129))
    target[:, :5] = 255
    losses = net.compute_loss(out, target)
    assert set(losses) == {"loss_main", "loss_aux", "loss"}
    torch.testing.assert_close(losses["loss"], losses["loss_main"] + 0.4 * losses["loss_aux"])
    losses["loss"].backward()
    assert net.backbone.stem[0].weight.grad is not None
    assert net.decode_head.classifier.weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        assert net(x[:1]).shape == (1, 19, 129, 129)


def test_backbone_output_stride_8() -> None:
    cfg = compose_cfg(["model=ann_r50", "dataset=cityscapes", "model.backbone.pretrained=null"])
    backbone = instantiate(cfg.model.backbone).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [256, 512, 1024, 2048]
    assert [f.shape[-1] for f in feats] == [16, 8, 8, 8]


def test_blocks_keep_query_resolution() -> None:
    x = torch.randn(2, 32, 13, 17)
    assert APNB(32, 32, 16, 16).eval()(x).shape == (2, 32, 13, 17)
    assert NonLocal2d(32, 32, 16, 16).eval()(x).shape == (2, 32, 13, 17)
    low = torch.randn(2, 24, 13, 17)
    assert AFNB(24, 32, 40, 16, 16).eval()(low, x).shape == (2, 40, 13, 17)


def test_apnb_matches_paper_formula() -> None:
    torch.manual_seed(0)
    block = APNB(8, 8, 4, 6, pool_sizes=(1, 2)).eval()
    x = torch.randn(1, 8, 5, 7)
    with torch.no_grad():
        phi = block.query_key(x).flatten(2)[0]  # (C', N)
        pooled = [torch.nn.functional.adaptive_avg_pool2d(block.query_key(x), s) for s in (1, 2)]
        theta_p = torch.cat([p.flatten(2) for p in pooled], 2)[0]  # (C', S)
        gv = block.value(x)
        gamma_p = torch.cat(
            [torch.nn.functional.adaptive_avg_pool2d(gv, s).flatten(2) for s in (1, 2)], 2
        )[0]  # (Cv, S)
        v_p = torch.softmax(phi.T @ theta_p / 4**0.5, dim=1)  # (N, S)
        expected = (v_p @ gamma_p.T).T.reshape(1, 6, 5, 7)
        torch.testing.assert_close(block.context(x), expected, atol=1e-5, rtol=1e-5)


def test_attention_paths_agree() -> None:
    q, k, v = torch.randn(2, 50, 8), torch.randn(2, 11, 8), torch.randn(2, 11, 5)
    torch.testing.assert_close(attend(q, k, v, 0.3, "sdpa"), attend(q, k, v, 0.3, "matmul"))


def test_output_projection_starts_at_zero() -> None:
    block = APNB(8, 8, 4, 4)
    assert block.out_proj.weight.abs().sum() == 0
