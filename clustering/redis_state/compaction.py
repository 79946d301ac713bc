"""Index snapshots of the writer's running index, stored by a forked child, off the writer's hot path.

A restarting writer loads the latest snapshot and adds the faces after it, so snapshots bound restart time.
Serialising hnswlib's index holds the GIL (about 5 ms per 1,000 faces) and storing it in Redis takes longer
still, so the writer does neither: every ``snapshot_every`` faces it forks (only page tables are copied: up
to about 35 ms near a million faces, with its large allocations in huge pages and put back in them after each
child, clustering/host/huge_pages.py). The child holds the index exactly as
it was after that face (copy on write: the writer goes on inserting into its own pages), saves it to a
temporary file, stores its graph without the vectors (they are in Redis already; clustering/redis_state/hnsw_format.py),
fenced by the writer lease, and exits. The writer reaps it without waiting.

The child runs hnswlib's save, numpy and a Redis connection of its own, nothing else: it takes no lock another
thread of the writer may have held at the fork (the index gets a new lock in the child; logging re-creates its
locks at fork) and leaves through ``os._exit``, so nothing of the parent's Kafka clients or threads runs there.

What restarts keep, exactly: every face applied before keeps its cluster (the clustering state is in Redis),
and the index is the writer's own graph as it was at the snapshot. The faces after the snapshot are inserted
again with other random level draws (hnswlib does not save its generator), so later approximate answers can
differ (docs/architecture.md).
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clustering.host.huge_pages import COLLAPSER
from clustering.index import HnswIndex
from clustering.neighbour_search import NeighbourSearch, insert_cores
from clustering.redis_state.hnsw_format import strip_vectors, write_with_vectors
from clustering.redis_state.redis_client import RedisAddress, connect
from clustering.redis_state.redis_store import RedisStore
from clustering.settings import IndexSettings
from clustering.store import StoredState, stand_ins_filled

log = logging.getLogger(__name__)

#: A child that has not stored its snapshot by then is stuck (one at a million faces takes seconds).
CHILD_DEADLINE_S = 600.0
#: A writer giving its space up on purpose stores a last snapshot when it is at least this far ahead of the
#: stored one (or ``every``, when smaller): the next writer then inserts again only the faces of the last,
#: partial insert block (they are not in the index: clustering/neighbour_search.py).
HANDOVER_MIN_FACES = 1_000


def store_snapshot(index: HnswIndex, store: RedisStore, dimension: int) -> None:
    """Stores ``index``, which holds the space's first ``len(index)`` faces, as the space's snapshot, without
    its vectors (an older snapshot than the current one is dropped)."""
    with tempfile.TemporaryDirectory(prefix="facestream-snapshot-") as folder:
        path = Path(folder) / "index.bin"
        index.save(path)
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as saved:
            graph = strip_vectors(saved, dimension)
    store.save_snapshot(graph, len(index))


def restored_index(state: StoredState, dimension: int, settings: IndexSettings) -> NeighbourSearch:
    """The faces of a stored state as the writer held them: its snapshot with the vectors put back plus the
    whole blocks after it in the index, and the faces of the last, partial block pending."""
    threads = insert_cores(settings.insert_threads)
    total = len(state.embeddings)
    inserted = max(total - total % settings.insert_block, state.snapshot_count if state.snapshot else 0)
    if state.snapshot is None:
        index = HnswIndex(dimension, settings)
        start = 0
    else:
        with tempfile.TemporaryDirectory(prefix="facestream-restore-") as folder:
            path = Path(folder) / "index.bin"
            with path.open("wb") as handle:
                write_with_vectors(state.snapshot, state.embeddings[: state.snapshot_count], dimension, handle)
            index = HnswIndex(dimension, settings, snapshot=path)
        start = state.snapshot_count
    # Block by block, as the writer inserted them: with one insert thread, the running graph exactly.
    for first in range(start, inserted, settings.insert_block):
        last = min(first + settings.insert_block, inserted)
        index.add_all(first, stand_ins_filled(state.embeddings[first:last], dimension), threads)
    pending = stand_ins_filled(state.embeddings[inserted:], dimension)
    return NeighbourSearch(index, settings.insert_block, threads, pending, state.forgotten)


@dataclass(frozen=True)
class SnapshotJob:
    """What a snapshot child needs besides the index: where the space is, the writer's lease token, and the
    vectors' dimension."""

    redis: RedisAddress
    space: str
    token: str
    dimension: int


def _child(job: SnapshotJob, index: HnswIndex, faces: int) -> int:
    """The forked child's whole life; returns its exit status."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's stop flag is not the child's business
        os.nice(10)  # the writer's insert threads come first; the snapshot takes the cores they leave
        started = time.perf_counter()
        store_snapshot(index, RedisStore(connect(job.redis), job.space, job.token), job.dimension)
        log.info("index snapshot of %d faces of space %s in %.1f s", faces, job.space, time.perf_counter() - started)
        return 0
    except BaseException:
        log.exception("the index snapshot of %d faces of space %s failed", faces, job.space)
        return 1


class Compactor:
    """Forks a snapshot child every ``every`` faces, one at a time, and reaps it without waiting."""

    def __init__(
        self, job: SnapshotJob, every: int, covered: int, child_ended: Callable[[], None] = COLLAPSER.request
    ) -> None:
        """``covered``: the faces the stored snapshot covers now. ``child_ended`` is called when a child is
        gone: by default the writer's memory is put back in huge pages its writes split while the child shared
        them (clustering/host/huge_pages.py)."""
        self.job = job
        self.every = every
        self._child_ended = child_ended
        self._child: int | None = None
        self._faces = 0
        self._started = 0.0
        self._due_at = covered + every
        #: (faces, seconds) of each snapshot stored, for metrics.
        self.finished: list[tuple[int, float]] = []

    def after(self, index: HnswIndex) -> None:
        """Called when ``index`` holds every face applied so far: reaps a finished child; then, with none
        running, either grows the index ahead of need or forks one when a snapshot is due (one of the two, so
        that no batch end pays both)."""
        self._reap()
        if self._child is not None:
            return
        # hnswlib's resize reallocates the whole index: with a child sharing those pages it remaps them one by
        # one (about 270 ms at half a million faces, against 15 ms with no child), so grow while none runs.
        if index.grow_ahead():
            return
        if self.every and len(index) >= self._due_at:
            self._start(index)

    def hand_over(self, index: HnswIndex, wait_s: float) -> bool:
        """Before the lease is given up on purpose: stores a snapshot of all of ``index`` when it is worth it,
        waiting up to ``wait_s`` (the parent only sleeps: the lease keeper goes on renewing). Returns whether
        one was stored."""
        self.stop()  # a child still storing an older one
        faces = len(index)
        if not self.every or faces - (self._due_at - self.every) < min(self.every, HANDOVER_MIN_FACES):
            return False
        self._start(index)
        deadline = time.monotonic() + wait_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.stop()
        return any(stored == faces for stored, _ in self.finished)

    def _start(self, index: HnswIndex) -> None:
        faces = len(index)
        self._faces, self._started, self._due_at = faces, time.monotonic(), faces + self.every
        pid = index.fork()
        if pid == 0:
            os._exit(_child(self.job, index, faces))
        self._child = pid

    def running(self) -> bool:
        self._reap()
        return self._child is not None

    def _reap(self) -> None:
        if self._child is None:
            return
        pid, status = os.waitpid(self._child, os.WNOHANG)
        if pid == 0:
            if time.monotonic() - self._started > CHILD_DEADLINE_S:
                log.error(
                    "the index snapshot of %d faces has run for %.0f s: stopping it", self._faces, CHILD_DEADLINE_S
                )
                self.stop()
            return
        self._child = None
        self._child_ended()
        if os.waitstatus_to_exitcode(status) == 0:
            self.finished.append((self._faces, time.monotonic() - self._started))
        else:
            log.error(
                "the index snapshot of %d faces failed (exit %s; its log is above); the next is due at %d faces",
                self._faces,
                os.waitstatus_to_exitcode(status),
                self._due_at,
            )

    def stop(self) -> None:
        """Ends a running child: the snapshot it was building is simply not stored."""
        child, self._child = self._child, None
        if child is not None:
            os.kill(child, signal.SIGKILL)  # a child that has exited is a zombie until reaped: this cannot miss
            os.waitpid(child, 0)
            self._child_ended()
