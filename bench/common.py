"""Helpers shared by the benchmarks: data location, frames of a clip, medians."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"{path} is absent: the benchmarks read the labeled data in ../shared/data")
    return path


def video_frames(path: Path, limit: int | None = None) -> list[NDArray[np.uint8]]:
    capture = cv2.VideoCapture(str(require(path)))
    frames: list[NDArray[np.uint8]] = []
    while limit is None or len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(np.asarray(frame, dtype=np.uint8))
    capture.release()
    return frames


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
