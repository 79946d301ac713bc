"""An HNSW index over unit embeddings (hnswlib, cosine) that owns its labels and its locking.

hnswlib's inserts are not safe beside queries, so one writer excludes readers; queries run together.
Labels are dense integers given by the caller (the engine's face numbers), in insertion order.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hnswlib
import numpy as np
from numpy.typing import NDArray

from clustering.host.huge_pages import small_pages
from clustering.host.instruction_set import check_hnswlib_build
from clustering.settings import IndexSettings


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True

    def release_write(self) -> None:
        with self._cond:
            self._writing = False
            self._cond.notify_all()


class HnswIndex:
    def __init__(self, dimension: int, settings: IndexSettings, snapshot: Path | None = None) -> None:
        """An empty index, or the one ``save`` wrote to the file ``snapshot``."""
        check_hnswlib_build()
        self.dimension = dimension
        self.settings = settings
        self._lock = ReadWriteLock()
        #: Labels marked deleted (hnswlib does not count them).
        self._deleted: set[int] = set()
        self._index = hnswlib.Index(space="cosine", dim=dimension)
        if snapshot is None:
            self._index.init_index(
                max_elements=settings.initial_capacity,
                M=settings.m,
                ef_construction=settings.ef_construction,
                random_seed=settings.random_seed,
            )
        else:
            self._index.load_index(str(snapshot), max_elements=0)
        self._index.set_ef(settings.ef)  # ef is not part of a saved index

    def __len__(self) -> int:
        return int(self._index.get_current_count())

    @property
    def capacity(self) -> int:
        """Items it holds memory for; more make it resize."""
        return int(self._index.get_max_elements())

    def add_all(self, first_label: int, vectors: NDArray[np.float32], threads: int) -> None:
        """Adds ``vectors`` as labels ``first_label``, ``first_label + 1``, ... on ``threads`` cores. With one,
        in order: the same input always builds the same graph; with more, the graph depends on thread timing."""
        with self._lock.write():
            capacity = self.capacity
            needed = len(self) + len(vectors)
            if needed > capacity:
                self._resize(max(needed, capacity * 2, 1024))
            labels = np.arange(first_label, first_label + len(vectors))
            self._index.add_items(vectors, labels, num_threads=threads)

    def grow_ahead(self) -> bool:
        """Doubles the capacity when more than three quarters of it is used, so that ``add_all`` seldom has to
        (the caller picks a moment a resize is cheap: clustering/redis_state/compaction.py). Returns whether it grew."""
        # Read unlocked: only the writer, which calls this, changes either. Most batch ends stop here, readers free.
        if len(self) * 4 <= self.capacity * 3:
            return False
        with self._lock.write():
            self._resize(self.capacity * 2)
            return True

    def _resize(self, capacity: int) -> None:
        with small_pages():  # the new per-item locks: fresh memory, faster to fault in 4 KB pages
            self._index.resize_index(capacity)

    def delete(self, labels: list[int]) -> None:
        """Takes these items out of every later query (hnswlib marks them deleted)."""
        with self._lock.write():
            for label in labels:
                if label in self._deleted:
                    continue
                with contextlib.suppress(RuntimeError):  # deleted already in the snapshot it was loaded from
                    self._index.mark_deleted(label)
                self._deleted.add(label)

    def query(self, vector: NDArray[np.float32], k: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Labels and cosine similarities of the ``k`` nearest items, nearest first (fewer if fewer exist)."""
        with self._lock.read():
            k = min(k, len(self) - len(self._deleted))
            if k == 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            # ef below k makes hnswlib fail to return k items; raise it for this query when needed.
            if k > self.settings.ef:
                self._index.set_ef(k)
            labels, distances = self._index.knn_query(vector.reshape(1, -1), k=k, num_threads=1)
            if k > self.settings.ef:
                self._index.set_ef(self.settings.ef)
        return labels[0].astype(np.int64), (1.0 - distances[0]).astype(np.float32)

    def vectors(self, labels: list[int]) -> NDArray[np.float32]:
        """The stored (unit) vectors of these items, one row each; none may be deleted."""
        with self._lock.read():
            rows = self._index.get_items(labels, return_type="numpy")
        return np.asarray(rows, np.float32).reshape(len(labels), self.dimension)

    def query_many(
        self, vectors: NDArray[np.float32], k: int, threads: int
    ) -> list[tuple[NDArray[np.int64], NDArray[np.float32]]]:
        """``query`` for each row of ``vectors``, on ``threads`` cores (each answer is the one ``query`` gives)."""
        with self._lock.read():
            k = min(k, len(self) - len(self._deleted))
            if k == 0:
                return [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in vectors]
            if k > self.settings.ef:
                self._index.set_ef(k)
            labels, distances = self._index.knn_query(vectors, k=k, num_threads=threads)
            if k > self.settings.ef:
                self._index.set_ef(self.settings.ef)
        similarities = (1.0 - distances).astype(np.float32)
        return [(row.astype(np.int64), sims) for row, sims in zip(labels, similarities, strict=True)]

    def save(self, path: Path) -> None:
        """Writes the whole index to ``path`` in hnswlib's own file format."""
        with self._lock.read():
            self._index.save_index(str(path))

    def fork(self) -> int:
        """``os.fork()`` while no thread is inside hnswlib, so the child's copy of the index is whole and
        stays as it is now (copy on write) however the parent goes on. Returns 0 in the child, whose lock is a
        new one: the parent's threads are not there to release the old one."""
        self._lock.acquire_write()
        try:
            pid = os.fork()
        except BaseException:
            self._lock.release_write()
            raise
        if pid == 0:
            self._lock = ReadWriteLock()
        else:
            self._lock.release_write()
        return pid
