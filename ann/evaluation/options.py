"""The evaluator's option choices, spelled once. :class:`~ann.evaluation.evaluator.Evaluator`
checks its arguments against them when it is built (:func:`check_options`),
and the start-up schema (:mod:`ann.config.schema`) types the ``evaluator.*``
keys with the same tuples, so a new choice is added here and nowhere else."""

from __future__ import annotations

from collections.abc import Sequence

from ann.errors import ConfigError

MODES = ("whole", "slide")  # evaluator.mode (ann.evaluation.scores)
AVERAGES = ("prob", "logits")  # evaluator.average: what is averaged over scales and flips
FORMATS = ("trainid", "cityscapes", "color")  # evaluator.save_predictions (PredictionWriter)
AMP_DTYPES = ("bf16", "fp16")  # evaluator.amp_dtype, trainer.amp_dtype


def check_options(
    mode: str,
    scales: Sequence[float],
    crop_size: Sequence[int] | None,
    stride: Sequence[int] | None,
    average: str,
    save_predictions: str | None = None,
) -> None:
    """Raises a one-line :class:`ConfigError` naming the ``evaluator.*`` key
    that has an unusable value."""
    if mode not in MODES:
        raise ConfigError(f"evaluator.mode must be one of {list(MODES)}, got {mode!r}")
    if average not in AVERAGES:
        raise ConfigError(f"evaluator.average must be one of {list(AVERAGES)}, got {average!r}")
    if save_predictions is not None and save_predictions not in FORMATS:
        raise ConfigError(
            f"evaluator.save_predictions must be null or one of {list(FORMATS)}, "
            f"got {save_predictions!r}"
        )
    if not scales or any(float(s) <= 0 for s in scales):
        raise ConfigError(f"evaluator.scales must be positive ratios, got {list(scales)}")
    if mode == "slide":
        for key, value in (("crop_size", crop_size), ("stride", stride)):
            if value is None or len(value) != 2 or any(int(v) <= 0 for v in value):
                raise ConfigError(
                    f"evaluator.{key} must be [height, width] of positive ints for "
                    f"evaluator.mode=slide, got {value if value is None else list(value)}"
                )
        if any(int(s) > int(c) for s, c in zip(stride, crop_size, strict=True)):
            raise ConfigError(
                f"evaluator.stride {list(stride)} must not exceed evaluator.crop_size "
                f"{list(crop_size)} (windows would leave gaps)"
            )


__all__ = ["AMP_DTYPES", "AVERAGES", "FORMATS", "MODES", "check_options"]
