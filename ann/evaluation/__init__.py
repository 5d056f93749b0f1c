"""Evaluation: the evaluator, test-time inference (whole, sliding window,
scales and flips), metrics and prediction writers."""
