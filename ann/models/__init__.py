"""Models: dilated ResNet backbones, ANN heads, the segmentor and its losses."""

from ann.models.segmentor import EncoderDecoder

__all__ = ["EncoderDecoder"]
