"""Alignment of faces to the ArcFace 112x112 template: pure functions over numpy arrays."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

#: The five reference points of insightface's ArcFace crops at 112x112: left eye, right eye, nose tip,
#: left and right mouth corners (image left and right).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
ARCFACE_SIZE = 112


def similarity_transform(src: NDArray[np.floating], dst: NDArray[np.floating]) -> NDArray[np.float64]:
    """2x3 matrix of the rotation, uniform scale and translation mapping ``src`` onto ``dst``.

    Least squares (Umeyama 1991), reflections excluded. Points are (n, 2) with n >= 2.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"need two matching (n>=2, 2) point sets, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / src.shape[0]
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    src_var = (src_c**2).sum() / src.shape[0]
    scale = float((singular * sign).sum() / src_var) if src_var > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def arcface_matrix(landmarks: NDArray[np.floating], size: int = ARCFACE_SIZE) -> NDArray[np.float64]:
    """Transform from image pixels to an aligned ``size`` x ``size`` crop for five landmarks."""
    return similarity_transform(landmarks, ARCFACE_TEMPLATE * (size / ARCFACE_SIZE))


def align_face(
    image: NDArray[np.uint8], landmarks: NDArray[np.floating], size: int = ARCFACE_SIZE
) -> NDArray[np.uint8]:
    """The face cropped and aligned to the ArcFace template; pixels outside the image are zero."""
    matrix = arcface_matrix(landmarks, size)
    aligned = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return np.asarray(aligned, dtype=np.uint8)


def align_faces(
    image: NDArray[np.uint8], landmarks: NDArray[np.floating], size: int = ARCFACE_SIZE
) -> NDArray[np.uint8]:
    """(n, size, size, channels) crops for (n, 5, 2) landmarks of one image."""
    channels = image.shape[2] if image.ndim == 3 else 1
    crops = np.zeros((len(landmarks), size, size, channels), np.uint8)
    for i, points in enumerate(landmarks):
        crops[i] = align_face(image, points, size).reshape(size, size, channels)
    return crops
