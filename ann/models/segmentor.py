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
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.decode_head = decode_head
        self.aux_head = aux_head
        self.loss = loss
        self.num_classes = num_classes
        self.aux_weight = aux_weight
        self.align_corners = align_corners

    def _upsample(self, logits: Tensor, size: tuple[int, int]) -> Tensor:
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward(self, images: Tensor) -> Tensor | dict[str, Tensor]:
        size = images.shape[-2:]
        features = self.backbone(images)
        out = self._upsample(self.decode_head(features), size)
        if not self.training:
            return out
        outputs = {"out": out}
        if self.aux_head is not None:
            outputs["aux"] = self._upsample(self.aux_head(features), size)
        return outputs

    def compute_loss(self, outputs: dict[str, Tensor], target: Tensor) -> dict[str, Tensor]:
        """Loss terms for training outputs and target (B, H, W) int64.

        Returns {"loss_main", ["loss_aux",] "loss"}, "loss" the weighted sum.
        """
        losses = {"loss_main": self.loss(outputs["out"], target)}
        total = losses["loss_main"]
        if "aux" in outputs:
            losses["loss_aux"] = self.loss(outputs["aux"], target)
            total = total + self.aux_weight * losses["loss_aux"]
        losses["loss"] = total
        return losses
