"""The nearest earlier faces of each new face: an HNSW index over whole blocks of faces, and an exact search over
the faces of the block in progress.

Faces enter the HNSW index a block at a time (``insert_block`` faces, labels ``b * block`` to ``(b + 1) *
block - 1``), on ``insert_threads`` cores: hnswlib's inserts then run in parallel, and a block's queries can be
answered in one parallel call ahead of the faces (``expect``). Until its block is full a face is found by brute
force among the block's faces, which is exact and, for a block of up to a few hundred, cheaper than one
HNSW query. Which faces a
face is compared with by which search depends only on its label, never on how a consumer's polls cut the
stream, so with one insert thread the answers are a function of the faces' order alone (docs/architecture.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from clustering.host.cpu_cores import usable_cores
from clustering.index import HnswIndex

Found = tuple[list[int], list[float]]


def insert_cores(threads: int) -> int:
    """The cores a block is inserted on: ``threads``, or for 0 those this process can keep busy (its affinity,
    capped by a container's CPU quota)."""
    return threads if threads > 0 else usable_cores()


def _unit(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit: NDArray[np.float32] = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return unit


class NeighbourSearch:
    def __init__(
        self,
        index: HnswIndex,
        block: int,
        threads: int,
        pending: NDArray[np.float32] | None = None,
        forgotten: Iterable[int] = (),
    ) -> None:
        """Over ``index`` (the first ``len(index)`` faces), with the faces after them in ``pending`` (rows in
        label order) and, among those, the labels in ``forgotten`` taken out."""
        self.index = index
        self._block = block
        self._cores = insert_cores(threads)  # read once: the cgroup files are not free to read per block
        dimension = index.dimension
        self._first = len(index)
        #: The pending faces as given (hnswlib normalises what it inserts) and as unit rows for the exact search.
        self._raw = np.empty((0, dimension), np.float32)
        self._unit = np.empty((0, dimension), np.float32)
        self._count = 0
        self._forgotten: set[int] = set()
        self._upcoming: dict[str, NDArray[np.float32]] = {}
        #: Face id -> (index size the answer holds for, labels, similarities) of queries made ahead.
        self._ahead: dict[str, tuple[int, Found]] = {}
        #: The last vector the exact search was made for, and its unit row.
        self._last_unit: tuple[NDArray[np.float32] | None, NDArray[np.float32]] = (None, self._unit[:0])
        #: The writer's thread changes the block while others (the identity API) search it.
        self._lock = threading.Lock()
        if pending is not None and len(pending):
            for row in pending:
                self._append(row)
        self.forget(forgotten)

    def __len__(self) -> int:
        return self._first + self._count

    def expect(self, faces: dict[str, NDArray[np.float32]]) -> None:
        """The faces (id -> vector, in the order they will be added) about to come: their index queries are
        made together, on every insert core, as they are needed."""
        self._upcoming = dict(faces)
        self._ahead.clear()

    def nearest(self, face_id: str, vector: NDArray[np.float32], count: int) -> Found:
        """Labels and similarities of the ``count`` nearest faces to the next face ``vector``, nearest first."""
        self._upcoming.pop(face_id, None)
        ahead = self._ahead.pop(face_id, None)
        with self._lock:
            if ahead is not None and ahead[0] == len(self.index):
                labels, sims = ahead[1]
            else:
                labels, sims = self._query_ahead(face_id, vector, count)
            return self._with_block(labels, sims, vector, count)

    def search(self, vector: NDArray[np.float32], count: int) -> Found:
        """The ``count`` nearest faces to ``vector``, nearest first; safe beside the writer's thread."""
        with self._lock:
            labels, sims = self.index.query(vector, count)
            return self._with_block(labels.tolist(), sims.tolist(), vector, count)

    def vectors(self, labels: list[int]) -> NDArray[np.float32]:
        """The unit vectors of these faces (none forgotten), one row each."""
        with self._lock:
            rows = np.empty((len(labels), self.index.dimension), np.float32)
            in_index = [i for i, label in enumerate(labels) if label < self._first]
            if in_index:
                rows[in_index] = self.index.vectors([labels[i] for i in in_index])
            for i, label in enumerate(labels):
                if label >= self._first:
                    rows[i] = self._unit[label - self._first]
            return rows

    def _with_block(self, labels: list[int], sims: list[float], vector: NDArray[np.float32], count: int) -> Found:
        """The index's answer merged with the exact one among the pending faces."""
        if not self._count:
            return labels, sims
        self._last_unit = vector, _unit(vector)  # the writer adds the face it searched for next
        block_sims = self._unit[: self._count] @ self._last_unit[1]
        for label in self._forgotten:
            block_sims[label - self._first] = -np.inf
        merged_labels = np.concatenate([np.asarray(labels, np.int64), np.arange(self._first, len(self))])
        merged_sims = np.concatenate([np.asarray(sims, np.float32), block_sims.astype(np.float32)])
        order = np.argsort(-merged_sims, kind="stable")[:count]
        order = order[np.isfinite(merged_sims[order])]
        return merged_labels[order].tolist(), merged_sims[order].tolist()

    def _query_ahead(self, face_id: str, vector: NDArray[np.float32], count: int) -> Found:
        """Queries this face and the expected ones that will still find the index as it is (the rest of the
        block), in one call; keeps the others' answers."""
        room = self._block - self._count - 1
        ids = [face_id, *list(self._upcoming)[: max(room, 0)]]
        vectors = np.stack([vector, *(self._upcoming[i] for i in ids[1:])])
        answers = self.index.query_many(vectors, count, self._cores)
        size = len(self.index)
        for other, (labels, sims) in zip(ids[1:], answers[1:], strict=True):
            self._ahead[other] = (size, (labels.tolist(), sims.tolist()))
        return answers[0][0].tolist(), answers[0][1].tolist()

    def add(self, label: int, vector: NDArray[np.float32]) -> None:
        """Adds the next face; a full block goes into the index."""
        if label != len(self):
            raise ValueError(f"face {label} added after {len(self)} faces: labels are dense and in order")
        with self._lock:
            self._append(vector)
            if len(self) % self._block == 0:
                self._insert_block()

    def _append(self, vector: NDArray[np.float32]) -> None:
        if self._count == len(self._raw):
            grown = max(self._block, 2 * self._count)
            self._raw = np.resize(self._raw, (grown, self.index.dimension))
            self._unit = np.resize(self._unit, (grown, self.index.dimension))
        self._raw[self._count] = vector
        last_vector, last_unit = self._last_unit
        self._unit[self._count] = last_unit if last_vector is vector else _unit(vector)
        self._count += 1

    def _insert_block(self) -> None:
        self.index.add_all(self._first, self._raw[: self._count], self._cores)
        self.index.delete(sorted(self._forgotten))
        self._first += self._count
        self._count = 0
        self._forgotten.clear()
        self._ahead.clear()

    def forget(self, labels: Iterable[int]) -> None:
        """Takes these faces out of every later answer."""
        labels = set(labels)
        with self._lock:
            self.index.delete(sorted(label for label in labels if label < self._first))
            self._forgotten.update(label for label in labels if label >= self._first)
            self._ahead.clear()  # answers made before may name them
