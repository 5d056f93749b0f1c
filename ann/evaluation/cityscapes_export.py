"""Cityscapes benchmark export: trainId predictions as labelId PNGs.

The official evaluation (cityscapesscripts ``evalPixelLevelSemanticLabeling``,
also run by the benchmark server) walks the results folder recursively and
finds the prediction for ground truth ``{city}_{seq}_{frame}_gtFine_labelIds.png``
by the pattern ``{city}_{seq}_{frame}*.png``; each must be a single-channel
PNG of labelIds at the full label resolution. We write
``{city}/{city}_{seq}_{frame}_leftImg8bit.png`` (the input image's name, as
mmsegmentation does), so that ``cd predictions && zip -r ../submission.zip .``
gives an archive ready to upload.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ann.data.cityscapes import train_id_to_label_id_lut
from ann.errors import ConfigError

# city names may contain "_"? They do not in Cityscapes, but be lenient: the
# sequence and frame numbers are the last two 6-digit fields.
_NAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})$")


def to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """(H, W) trainIds in [0, 19) -> (H, W) uint8 Cityscapes labelIds."""
    return train_id_to_label_id_lut()[train_ids.astype(np.uint8)]


def result_path(sample_name: str) -> Path:
    """Relative path of the labelId PNG for a sample named ``{city}_{seq}_{frame}``
    (e.g. ``frankfurt_000000_000294``): ``{city}/{city}_{seq}_{frame}_leftImg8bit.png``."""
    base = Path(sample_name).name
    match = _NAME.match(base)
    if match is None:
        raise ConfigError(
            f"evaluator.save_predictions=cityscapes: sample {sample_name!r} is not named "
            "CITY_SEQ_FRAME (6-digit sequence and frame numbers) as Cityscapes images are"
        )
    return Path(match["city"]) / f"{base}_leftImg8bit.png"
