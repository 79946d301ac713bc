"""Index snapshots built off the writer's hot path, in a child process, from the state in Redis.

A restarting writer loads the latest snapshot and adds the faces after it, so snapshots bound restart time.
Serialising hnswlib's index holds the GIL (about 5 ms per 1,000 faces) and writing it to Redis takes longer
still, so the writer never does either: every ``snapshot_every`` faces it starts a child process that loads
the previous snapshot, adds the embeddings applied since (read from Redis by pages), and stores the graph
without its copy of the vectors (they are in Redis already; clustering/hnsw_format.py), fenced by the writer
lease. The writer's own index is never touched or replaced.

What restarts keep, exactly: every face applied before keeps its cluster (the clustering state is in Redis).
What they may change: a restarted index is a graph built by different random level draws after the snapshot,
so later approximate nearest-neighbour answers can differ where HNSW is approximate (docs/architecture.md).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from clustering.hnsw_format import strip_vectors, with_vectors
from clustering.index import HnswIndex
from clustering.redis_client import RedisAddress, connect
from clustering.redis_store import RedisStore
from clustering.settings import IndexSettings
from clustering.store import stand_ins_filled
from streaming.redact import RedactingFilter

log = logging.getLogger(__name__)


def build_snapshot(store: RedisStore, dimension: int, settings: IndexSettings, upto: int) -> int:
    """Stores the index snapshot of the first ``upto`` faces: the current one plus the faces after it.
    Returns the faces the current snapshot covers afterwards."""
    previous, covered = store.snapshot()
    if covered >= upto:
        return covered
    vectors = stand_ins_filled(list(store.embeddings(0, upto)), dimension)
    index = HnswIndex(dimension, settings, snapshot=None if previous is None else with_vectors(previous, vectors))
    for label in range(covered, upto):
        index.add(label, vectors[label])
    forgotten = sorted(label for label in store.forgotten() if label < upto)
    if forgotten:
        index.delete(forgotten)  # their vectors are zeros now; the graph keeps them as deleted nodes
    store.save_snapshot(strip_vectors(index.snapshot(), dimension), upto)
    return upto


@dataclass(frozen=True)
class SnapshotJob:
    """What a snapshot child needs: where the space is, the writer's lease token, and the index's shape."""

    redis: RedisAddress
    space: str
    token: str
    dimension: int
    settings: IndexSettings


def _child(job: SnapshotJob, upto: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s compaction: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    started = time.perf_counter()
    client = connect(job.redis)
    store = RedisStore(client, job.space, job.token)
    build_snapshot(store, job.dimension, job.settings, upto)
    log.info("index snapshot of %d faces of space %s in %.1f s", upto, job.space, time.perf_counter() - started)


class Compactor:
    """Starts a snapshot child every ``every`` faces, one at a time, and reaps it without waiting."""

    def __init__(self, job: SnapshotJob, every: int, covered: int) -> None:
        """``covered``: the faces the stored snapshot covers now."""
        self.job = job
        self.every = every
        self._child: BaseProcess | None = None
        self._upto = 0
        self._started = 0.0
        self._due_at = covered + every
        #: (faces, seconds) of each snapshot stored, for metrics.
        self.finished: list[tuple[int, float]] = []

    def after(self, faces: int) -> None:
        """Called with the faces applied so far: reaps a finished child, starts one when a snapshot is due."""
        self._reap()
        if self._child is None and self.every and faces >= self._due_at:
            self._upto, self._started, self._due_at = faces, time.monotonic(), faces + self.every
            self._child = multiprocessing.get_context("spawn").Process(
                target=_child, args=(self.job, faces), name=f"compaction-{self.job.space}", daemon=True
            )
            self._child.start()

    def running(self) -> bool:
        return self._child is not None and self._child.is_alive()

    def _reap(self) -> None:
        child = self._child
        if child is None or child.is_alive():
            return
        child.join()
        self._child = None
        if child.exitcode == 0:
            self.finished.append((self._upto, time.monotonic() - self._started))
        else:
            log.error(
                "the index snapshot of %d faces failed (exit %s; its log is above); the next is due at %d faces",
                self._upto,
                child.exitcode,
                self._due_at,
            )

    def stop(self) -> None:
        """Ends a running child: the snapshot it was building is simply not stored."""
        child, self._child = self._child, None
        if child is not None and child.is_alive():
            child.terminate()
            child.join(timeout=10)
