"""Segmentation heads: the asymmetric non-local blocks and the heads built from them."""

from ann.models.heads.afnb import AFNB
from ann.models.heads.ann_head import ANNHead
from ann.models.heads.apnb import APNB
from ann.models.heads.fcn_head import FCNHead
from ann.models.heads.nonlocal_block import NonLocal2d

__all__ = ["AFNB", "ANNHead", "APNB", "FCNHead", "NonLocal2d"]
