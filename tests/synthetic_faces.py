"""Synthetic identities for the engine's tests: unit vectors around random centres, and small-block settings."""

from __future__ import annotations

import numpy as np

from clustering.settings import ClusteringSettings, IndexSettings, RankOrderSettings

DIM = 128


def identities(people: int, per_person: int, noise: float, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, DIM))
    vectors = np.repeat(centres, per_person, axis=0) + rng.normal(scale=noise, size=(people * per_person, DIM))
    order = rng.permutation(people * per_person)
    vectors = vectors[order] / np.linalg.norm(vectors[order], axis=1, keepdims=True)
    return vectors.astype(np.float32), [int(i) // per_person for i in order]


def settings(snapshot_every: int = 0, insert_block: int = 8) -> ClusteringSettings:
    """Small insert blocks, so that a few dozen faces go through both searches (exact within a block, HNSW)."""
    return ClusteringSettings(
        index=IndexSettings(insert_block=insert_block),
        rank_order=RankOrderSettings(snapshot_every=snapshot_every),
    )
