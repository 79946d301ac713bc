"""Helpers shared by the benchmarks: data location, frames of a clip, medians."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: Faces per photo of ../shared/data/scenes_unlabeled, counted by eye and found by both built-in detectors
#: (the detection tests check it; bench/detectors.py scores against it).
SCENE_FACES = {
    "deepface_couple.jpg": 2,
    "deepface_selfie-many-people.jpg": 6,
    "faceapi_bbt1.jpg": 4,
    "faceapi_bbt2.jpg": 3,
    "faceapi_bbt3.jpg": 5,
    "faceapi_bbt4.jpg": 6,
    "faceapi_bbt5.jpg": 5,
    "frec_kit_with_rose.jpg": 2,
    "frec_obama_and_biden.jpg": 3,
    "frec_two_people.jpg": 2,
    "insightface_t1.jpg": 6,
}


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
