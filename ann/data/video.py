"""Video files frame by frame through OpenCV: RGB frames in, RGB frames out.

OpenCV decodes and encodes in BGR order; these helpers convert, so that the
rest of the code sees (H, W, 3) uint8 RGB arrays as everywhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ann.errors import DataError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
# The codec written for each container: both ship with opencv-python's FFmpeg.
_FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
# After this many failed reads in a row the stream is taken to have ended
# early (its header over-counted frames) rather than to hold bad frames.
MAX_FAILED_IN_A_ROW = 25


def is_video(path: str | Path) -> bool:
    """Whether ``path`` names a file with a video suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass
class VideoInfo:
    """What the container's header says: frame count, frame rate, frame size."""

    frames: int
    fps: float
    width: int
    height: int


def _capture(path: Path):  # -> cv2.VideoCapture
    import cv2

    if not path.is_file():
        raise DataError(f"input={path}: no such video file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"input={path}: OpenCV cannot open this video (unknown codec or damaged)")
    return cap


def video_info(path: str | Path) -> VideoInfo:
    """The header of the video at ``path``; :class:`DataError` if it does not open."""
    import cv2

    cap = _capture(Path(path))
    try:
        return VideoInfo(
            frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            fps=float(cap.get(cv2.CAP_PROP_FPS)) or 25.0,
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        cap.release()


def read_frames(path: str | Path, count: int) -> Iterator[np.ndarray | None]:
    """The ``count`` frames the header announces, each an (H, W, 3) uint8 RGB
    array, or None for a frame that fails to decode (the caller decides what
    stands in for it). Stops early, with a warning, once
    :data:`MAX_FAILED_IN_A_ROW` reads fail in a row: the stream has ended."""
    import cv2

    cap = _capture(Path(path))
    failed_in_a_row = 0
    try:
        for index in range(count):
            ok, frame = cap.read()
            if not ok or frame is None:
                failed_in_a_row += 1
                if failed_in_a_row >= MAX_FAILED_IN_A_ROW:
                    log.warning("%s: no frame decodes after frame %d; stopped", path, index)
                    return
                yield None
                continue
            failed_in_a_row = 0
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


class VideoWriter:
    """Writes (H, W, 3) uint8 RGB frames to ``path`` at ``fps`` (codec by suffix)."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int) -> None:
        import cv2

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*_FOURCC.get(self.path.suffix.lower(), "mp4v"))
        self._writer = cv2.VideoWriter(str(self.path), fourcc, fps, (width, height))
        if not self._writer.isOpened():
            raise DataError(f"{self.path}: OpenCV cannot write this video format")
        self.size = (height, width)
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        """Appends one frame of the writer's size."""
        import cv2

        if rgb.shape[:2] != self.size:
            raise ValueError(f"frame of size {rgb.shape[:2]} for a video of size {self.size}")
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        """Finishes the file (writes the container's index)."""
        self._writer.release()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
