"""The encoder-decoder segmentor that ties backbone, heads and losses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class EncoderDecoder(nn.Module):
    """Backbone + decode head (+ auxiliary head), logits upsampled to the input.

    forward(images (B, 3, H, W), normalised):
      - eval mode: logits (B, K, H, W);
      - train mode: {"out": (B, K, H, W), "aux": (B, K, H, W)} ("aux" only
        with an auxiliary head). Pass the dict to :meth:`compute_loss`.

    ``loss`` scores the decode head, ``aux_loss`` the auxiliary head (None:
    the same as ``loss``; the authors' Cityscapes code uses OHEM for the
    first and plain weighted cross-entropy for the second). ``aux_head_first``
    runs the auxiliary head before the decode head in training, as the
    authors' network does (mmseg runs it after): only the order in which
    their Dropout2d layers draw from the RNG depends on it.
    """

    def __init__(
        self,
        backbone: nn.Module,
        decode_head: nn.Module,
        num_classes: int,
        loss: nn.Module,
        aux_head: nn.Module | None = None,
        aux_weight: float = 0.4,
        align_corners: bool = False,
        aux_loss: nn.Module | None = None,
        aux_head_first: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.aux_head = aux_head
        self.loss = loss
        self.aux_loss = aux_loss
        self.aux_head_first = aux_head_first
        self.num_classes = num_classes
        self.aux_weight = aux_weight
        self.align_corners = align_corners

    def _upsample(self, logits: Tensor, size: tuple[int, int]) -> Tensor:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward(self, images: Tensor) -> Tensor | dict[str, Tensor]:
        size = images.shape[-2:]
        features = self.backbone(images)
        if not self.training:
            return self._upsample(self.decode_head(features), size)
        aux = None
        if self.aux_head is not None and self.aux_head_first:
            aux = self.aux_head(features)
        outputs = {"out": self._upsample(self.decode_head(features), size)}
        if self.aux_head is not None:
            if aux is None:
                aux = self.aux_head(features)
            outputs["aux"] = self._upsample(aux, size)
        return outputs

    def compute_loss(self, outputs: dict[str, Tensor], target: Tensor) -> dict[str, Tensor]:
        """Loss terms for training outputs and target (B, H, W) int64.

        Returns {"loss_main", ["loss_aux",] "loss"}, "loss" the weighted sum.
        """
        losses = {"loss_main": self.loss(outputs["out"], target)}
        total = losses["loss_main"]
        if "aux" in outputs:
            aux_loss = self.loss if self.aux_loss is None else self.aux_loss
            losses["loss_aux"] = aux_loss(outputs["aux"], target)
            total = total + self.aux_weight * losses["loss_aux"]
        losses["loss"] = total
        return losses
