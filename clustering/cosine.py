"""Cosine-threshold clustering, a yardstick for `facestream eval`: the connected components of the graph
linking every pair of faces whose cosine similarity reaches the threshold.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from clustering.union_find import UnionFind

DEFAULT_COSINE_THRESHOLD = 0.45


def cosine_components(embeddings: NDArray[np.float32], threshold: float, block: int = 2048) -> NDArray[np.int64]:
    """Cluster label of each row: connected components of the graph of pairs with similarity >= threshold."""
    sets = UnionFind()
    for _ in range(len(embeddings)):
        sets.add()
    for start in range(0, len(embeddings), block):
        similarity = embeddings[start : start + block] @ embeddings.T
        rows, cols = np.nonzero(similarity >= threshold)
        for row, col in zip((rows + start).tolist(), cols.tolist(), strict=True):
            if col > row:
                sets.union(row, col)
    return np.asarray([sets.find(i) for i in range(len(embeddings))], np.int64)
