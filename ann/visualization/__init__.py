"""Figures (confusion matrix, per-class IoU, curves) and mask rendering."""
