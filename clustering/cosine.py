"""Cosine-threshold clustering: two faces whose similarity reaches the threshold share a cluster.

Online and batch forms give the same partition (connected components of the threshold graph); the online
form serves ``facestream run`` until the rank-order engine lands, the batch form is a yardstick in eval.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from clustering.events import Assignment, Merge
from clustering.union_find import UnionFind

DEFAULT_COSINE_THRESHOLD = 0.45


class OnlineCosineClustering:
    """Faces one at a time; each joins every cluster holding a face at least ``threshold`` similar."""

    def __init__(self, threshold: float = DEFAULT_COSINE_THRESHOLD, dimension: int = 512) -> None:
        self.threshold = threshold
        self._vectors = np.zeros((1024, dimension), np.float32)
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._sets = UnionFind()
        self.cluster_count = 0

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, face_id: str, embedding: NDArray[np.float32]) -> Assignment:
        """Clusters one unit-length embedding; adding a known face id again changes nothing."""
        if face_id in self._index:
            return Assignment(face_id, self.cluster_of(face_id))
        count = len(self._ids)
        if count == len(self._vectors):
            self._vectors = np.concatenate([self._vectors, np.zeros_like(self._vectors)])
        item = self._sets.add()
        similar = np.flatnonzero(self._vectors[:count] @ embedding >= self.threshold)
        self._vectors[count] = embedding
        self._ids.append(face_id)
        self._index[face_id] = item
        roots = sorted({self._sets.find(int(i)) for i in similar})
        merges: tuple[Merge, ...] = ()
        self.cluster_count += 1 - len(roots)
        if roots:
            for root in roots:
                self._sets.union(item, root)
            if len(roots) > 1:
                merges = (Merge(roots[0], tuple(roots[1:])),)
        return Assignment(face_id, self._sets.find(item), merges)

    def cluster_of(self, face_id: str) -> int:
        return self._sets.find(self._index[face_id])

    def embedding(self, face_id: str) -> NDArray[np.float32]:
        vector: NDArray[np.float32] = self._vectors[self._index[face_id]]
        return vector

    def labels(self) -> dict[str, int]:
        return {face_id: self._sets.find(i) for i, face_id in enumerate(self._ids)}


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
