"""The one rule for an embedding that comes from outside (a faces-topic record, a search request): finite,
not zero, and taken at unit length, since clustering and search compare directions."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from streaming.errors import StreamingError

#: A vector shorter than this is (nearly) all zeros: it has no direction to compare.
MIN_EMBEDDING_NORM = 1e-6
#: An embedding this close to unit length is taken as it is; others are scaled to unit length.
UNIT_TOLERANCE = 1e-3


class EmbeddingValueError(StreamingError, ValueError):
    """An embedding with no direction: NaN or infinity in it, or (nearly) all zeros."""


def unit_embedding(values: NDArray[np.float32]) -> NDArray[np.float32]:
    """``values`` at unit length: kept bit for bit when already within ``UNIT_TOLERANCE`` of it (as
    facestream's embedder writes them), scaled otherwise (some ONNX models give un-normalised vectors, and a
    direction is what cosine similarity compares). Raises EmbeddingValueError for a vector with no direction."""
    if not np.isfinite(values).all():
        raise EmbeddingValueError("holds NaN or infinity")
    norm = float(np.linalg.norm(values.astype(np.float64)))
    if norm < MIN_EMBEDDING_NORM:
        raise EmbeddingValueError("is (nearly) all zeros")
    if abs(norm - 1.0) <= UNIT_TOLERANCE:
        return values
    return (values / norm).astype(np.float32)
