"""Cross-entropy and OHEM edge cases, class weights, aux weight, loss configs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from ann.errors import ConfigError
from ann.models.losses import CrossEntropyLoss, OhemCrossEntropyLoss
from helpers import compose_cfg


def _data(seed: int = 0, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 6, 7, generator=g) * 3
    target = torch.randint(0, k, (2, 6, 7), generator=g)
    target[0, :2] = 255
    return logits, target


def _true_prob(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return logits.softmax(1).gather(1, target.clamp(max=logits.shape[1] - 1)[:, None])[:, 0]


def test_ce_ignores_ignore_index() -> None:
    logits, target = _data()
    valid = target != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
    torch.testing.assert_close(CrossEntropyLoss()(logits, target), expected)


def test_ce_class_weights() -> None:
    logits, target = _data()
    w = [0.5, 1.0, 2.0, 3.0]
    valid = target != 255
    nll = -logits.log_softmax(1).gather(1, target.clamp(max=3)[:, None])[:, 0]
    wt = torch.tensor(w)[target.clamp(max=3)]
    expected = (nll * wt)[valid].sum() / wt[valid].sum()
    torch.testing.assert_close(CrossEntropyLoss(class_weight=w)(logits, target), expected)
    with pytest.raises(ConfigError, match="class_weight"):
        CrossEntropyLoss(class_weight=[1.0, 2.0])(logits, target)


def test_ohem_keeps_hard_pixels_above_min_kept() -> None:
    logits, target = _data()
    valid = target != 255
    p = _true_prob(logits, target)
    nll = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    hard = valid & (p <= 0.7)
    assert 1 < int(hard.sum()) < int(valid.sum())
    loss = OhemCrossEntropyLoss(thresh=0.7, min_kept=1)(logits, target)
    torch.testing.assert_close(loss, nll[hard].mean())


def test_ohem_min_kept_raises_threshold() -> None:
    logits, target = _data()
    valid = target != 255
    p = _true_prob(logits, target)
    nll = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    k = int((valid & (p <= 0.7)).sum()) + 10
    kth = p[valid].sort().values[k - 1]
    loss = OhemCrossEntropyLoss(thresh=0.7, min_kept=k)(logits, target)
    torch.testing.assert_close(loss, nll[valid & (p <= kth)].mean())


def test_ohem_never_keeps_ignored_pixels() -> None:
    logits, target = _data()
    # Ignored pixels would be the hardest by far if they were looked at.
    logits[0, :, :2] = torch.tensor([-50.0, 50, 50, 50])[:, None, None]
    clean = logits.clone()
    clean[0, :, :2] = 0
    ohem = OhemCrossEntropyLoss(thresh=0.7, min_kept=10**6)
    torch.testing.assert_close(ohem(logits, target), ohem(clean, target))


def test_ohem_fewer_valid_than_min_kept_is_plain_ce() -> None:
    logits, target = _data()
    ce = CrossEntropyLoss()(logits, target)
    torch.testing.assert_close(OhemCrossEntropyLoss(min_kept=100000)(logits, target), ce)
    w = [0.5, 1.0, 2.0, 3.0]
    torch.testing.assert_close(
        OhemCrossEntropyLoss(min_kept=100000, class_weight=w)(logits, target),
        CrossEntropyLoss(class_weight=w)(logits, target),
    )


def test_ohem_all_ignored_is_zero_with_gradient() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.full((1, 4, 4), 255)
    loss = OhemCrossEntropyLoss()(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_ohem_easy_pixels_dropped() -> None:
    """All-confident pixels with min_kept=0: only the one hard pixel counts."""
    target = torch.zeros(1, 3, 3, dtype=torch.long)
    logits = torch.zeros(1, 2, 3, 3)
    logits[:, 0] = 10.0
    logits[0, 0, 1, 1] = -10.0
    nll = F.cross_entropy(logits, target, reduction="none")
    loss = OhemCrossEntropyLoss(thresh=0.7, min_kept=0)(logits, target)
    torch.testing.assert_close(loss, nll[0, 1, 1])


def test_aux_weight_and_loss_configs() -> None:
    cfg = compose_cfg(["model=ann_r18", "model/loss=ohem_cityscapes", "dataset=cityscapes"])
    loss = instantiate(cfg.model.loss)
    assert isinstance(loss, OhemCrossEntropyLoss)
    assert loss.thresh == 0.7 and loss.min_kept == 100000 and len(loss.class_weight) == 19
    cfg = compose_cfg(["model=ann_r50", "model/loss=ohem", "model.loss.min_kept=5"])
    assert instantiate(cfg.model.loss).min_kept == 5
    assert compose_cfg(["model=ann_r101"]).model.loss._target_.endswith("CrossEntropyLoss")
    model = instantiate(compose_cfg(["model=ann_r18", "model.aux_weight=0.25"]).model)
    logits, target = _data(k=model.num_classes)
    out = {"out": logits, "aux": logits.flip(-1)}
    losses = model.compute_loss(out, target)
    torch.testing.assert_close(losses["loss"], losses["loss_main"] + 0.25 * losses["loss_aux"])


@pytest.mark.parametrize("weighted", [False, True])
def test_averages_equal_mmseg_and_torch(weighted: bool) -> None:
    """average: all / valid are mmseg's avg_non_ignore False / True (class
    weights scale pixels, the divisor counts pixels); weighted is torch's."""
    from reference.mmseg_ann import cross_entropy

    logits, target = _data(k=4)
    logits = logits.double()
    w = [0.5, 1.0, 2.0, 1.5] if weighted else None
    wt = None if w is None else torch.tensor(w, dtype=torch.float64)
    for average, non_ignore in (("all", False), ("valid", True)):
        ours = CrossEntropyLoss(class_weight=w, average=average)(logits, target)
        torch.testing.assert_close(ours, cross_entropy(logits, target, 255, wt, non_ignore))
    ours = CrossEntropyLoss(class_weight=w, average="weighted")(logits, target)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target, wt, ignore_index=255))
    with pytest.raises(ConfigError, match="average"):
        CrossEntropyLoss(average="pixels")


@pytest.mark.parametrize("min_kept", [0, 1, 5, 30, 69, 70, 71, 10**6])
@pytest.mark.parametrize("thresh", [0.0, 0.3, 0.7])
def test_authors_ohem_equals_their_loss(min_kept: int, thresh: float) -> None:
    """rule: authors against FSOhemCELoss (tests/reference/official_ann.py),
    including min_kept around the 70 valid pixels and ties at the threshold."""
    from reference.official_ann import ohem_ce_loss

    logits, target = _data(k=4)
    logits = logits.double()
    logits[1, :, 0, :3] = 0.0  # three equal probabilities (1/4)
    w = [0.5, 1.0, 2.0, 1.5]
    ours = OhemCrossEntropyLoss(class_weight=w, thresh=thresh, min_kept=min_kept, rule="authors")
    ref = ohem_ce_loss(logits, target, thresh, min_kept, torch.tensor(w).double())
    torch.testing.assert_close(ours(logits, target), ref, rtol=1e-12, atol=1e-12)
    plain = OhemCrossEntropyLoss(thresh=thresh, min_kept=min_kept, rule="authors")
    torch.testing.assert_close(
        plain(logits, target), ohem_ce_loss(logits, target, thresh, min_kept)
    )


def test_loss_dtype_follows_logits() -> None:
    """fp64 logits: an fp64 loss (parity tests need 1e-9); fp32 stays fp32;
    half and bfloat16 (autocast) are computed in fp32."""
    logits, target = _data()
    for loss in (
        CrossEntropyLoss(class_weight=[1.0, 2.0, 1.0, 1.0]),
        OhemCrossEntropyLoss(min_kept=5),
        OhemCrossEntropyLoss(min_kept=5, rule="authors"),
    ):
        assert loss(logits.double(), target).dtype == torch.float64
        assert loss(logits, target).dtype == torch.float32
        assert loss(logits.bfloat16(), target).dtype == torch.float32
        assert loss(logits.half(), target).dtype == torch.float32


def test_aux_loss_defaults_to_the_main_loss() -> None:
    """model.aux_loss scores the aux head when set (the authors' recipes),
    the main loss otherwise (mmseg's)."""
    from ann.models.heads import ANNHead, FCNHead
    from ann.models.segmentor import EncoderDecoder

    logits, target = _data()
    out = {"out": logits, "aux": logits.flip(-1)}
    head, aux = ANNHead([4, 8], 4, 4, 4, 4), FCNHead(4, 4, 4)
    ohem = OhemCrossEntropyLoss(min_kept=5, rule="authors")
    plain = CrossEntropyLoss(average="weighted")
    same = EncoderDecoder(nn.Identity(), head, 4, ohem, aux)
    apart = EncoderDecoder(nn.Identity(), head, 4, ohem, aux, aux_loss=plain)
    torch.testing.assert_close(same.compute_loss(out, target)["loss_aux"], ohem(out["aux"], target))
    torch.testing.assert_close(
        apart.compute_loss(out, target)["loss_aux"], plain(out["aux"], target)
    )
    assert "aux_loss" not in same.state_dict() and set(apart.state_dict()) == set(same.state_dict())
