"""The face quality gate: which detected faces are good enough to embed, and why the others are not."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np
from numpy.typing import NDArray

from models.settings import QualitySettings

MAX_YAW_PROXY = 10.0


class Rejection(StrEnum):
    TOO_SMALL = "too_small"
    LOW_SCORE = "low_score"
    BLURRY = "blurry"
    PROFILE = "profile"


@dataclass(frozen=True)
class QualityReport:
    face_size: float
    score: float
    sharpness: float
    yaw: float
    rejection: Rejection | None

    @property
    def accepted(self) -> bool:
        return self.rejection is None


def sharpness(aligned: NDArray[np.uint8]) -> float:
    """Variance of the Laplacian of the grey crop: low on blurred or featureless faces."""
    grey = cv2.cvtColor(aligned, cv2.COLOR_BGR2GRAY) if aligned.ndim == 3 else aligned
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def yaw_proxy(landmarks: NDArray[np.floating]) -> float:
    """How far the nose sits from the eyes' midpoint along the eye line, in half eye distances.

    0 for a frontal face, about 1 with the nose over one eye (a three-quarter view), beyond 1 with the nose
    outside the eyes (a profile, where landmarks and embeddings are unreliable). Invariant to roll and scale.
    """
    left_eye, right_eye, nose = (np.asarray(landmarks[i], np.float64) for i in range(3))
    axis = right_eye - left_eye
    half = float(np.linalg.norm(axis)) / 2
    if half < 1e-6:
        return MAX_YAW_PROXY
    offset = float(np.dot(nose - (left_eye + right_eye) / 2, axis / (2 * half)))
    return min(abs(offset) / half, MAX_YAW_PROXY)


def assess(
    box: NDArray[np.floating],
    score: float,
    landmarks: NDArray[np.floating],
    aligned: NDArray[np.uint8],
    settings: QualitySettings,
) -> QualityReport:
    """Measures one face and names the first rule it breaks, cheapest rules first."""
    face_size = float(min(box[2] - box[0], box[3] - box[1]))
    yaw = yaw_proxy(landmarks)
    blur = sharpness(aligned)
    rejection: Rejection | None = None
    if face_size < settings.min_face_size:
        rejection = Rejection.TOO_SMALL
    elif score < settings.min_score:
        rejection = Rejection.LOW_SCORE
    elif yaw > settings.max_yaw:
        rejection = Rejection.PROFILE
    elif blur < settings.min_sharpness:
        rejection = Rejection.BLURRY
    return QualityReport(face_size, float(score), blur, yaw, rejection)
