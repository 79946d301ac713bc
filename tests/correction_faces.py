"""People and look-alikes for the corrections' tests: faces around a centre, two centres at a chosen similarity."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from clustering.engine import OnlineRankOrder

DIM = 64


Vector = NDArray[np.float32]


def person(centre: NDArray[np.float64], faces: int, rng: np.random.Generator, noise: float = 0.15) -> list[Vector]:
    vectors = centre + rng.normal(scale=noise / np.sqrt(DIM), size=(faces, DIM))
    return list((vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32))


def look_alikes(similarity: float, seed: int = 0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two unit centres with the given cosine similarity: siblings the model cannot tell apart."""
    rng = np.random.default_rng(seed)
    a, other = rng.normal(size=DIM), rng.normal(size=DIM)
    a /= np.linalg.norm(a)
    other -= other @ a * a
    other /= np.linalg.norm(other)
    return a, similarity * a + np.sqrt(1 - similarity**2) * other


def add_all(engine: OnlineRankOrder, prefix: str, vectors: list[Vector], start: int = 0) -> list[str]:
    ids = []
    for frame, vector in enumerate(vectors, start):
        ids.append(f"{prefix}:{frame}:0")
        engine.add(ids[-1], vector, camera=prefix, frame=frame)
    return ids
