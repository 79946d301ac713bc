"""The clustering state in Redis, one identity space per hash tag so that it fits one Redis Cluster slot.

Keys (``redis_keys``, beside this module), all under ``{fs:<space>}:``: faces (face id -> label), meta,
embeddings, neighbours, parents, clusters (hashes keyed by label or root), offsets (partition -> last applied
offset), count, the index snapshot (``redis_snapshots``), outbox (events of applied faces not yet published),
writer (the lease of the one active writer), and what corrections keep: links (of unions), marks (of split
sides), commands (applied ids), tombstones (SHA-1 of forgotten face ids), and what ``space_reads`` reads.
Records: ``redis_records``; the paged read of a whole space: ``redis_load``. A batch of faces, events and
corrections is applied by one Lua script in one round trip, so each face, its neighbour-list and union-find
changes, its cluster summaries, its input offset and its outgoing events become durable together or not at all;
a writer that lost its lease is refused by that same script (fencing).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray
from redis.exceptions import ResponseError

from clustering.packed import pack_links, pack_neighbours
from clustering.redis_state import redis_records as records
from clustering.redis_state.lua_scripts import lua
from clustering.redis_state.redis_client import RedisClient
from clustering.redis_state.redis_keys import Key, SpaceKeys
from clustering.redis_state.redis_load import forgotten_faces, load_state, paged_embeddings
from clustering.redis_state.redis_records import OutboxEntry, Sighting
from clustering.redis_state.redis_snapshots import SnapshotParts
from clustering.redis_state.space_reads import SpaceReads
from clustering.store import (
    EMBEDDING_DTYPE,
    ClusterSummary,
    CorrectionDelta,
    FaceDelta,
    FaceMeta,
    StoredState,
    StoreError,
    selects,
    tombstone,
)


class RedisStore:
    def __init__(
        self,
        client: RedisClient,
        space: str = "default",
        writer_token: str = "",
        *,
        observe: Callable[[str, float], None] | None = None,
        appearances_kept: int = 1_000,
        pictures_kept: int = 3,
    ) -> None:
        """``writer_token``: the token of the writer lease this process holds; writes are refused without it.
        ``observe``: called with (operation, seconds) after each call, e.g. to feed a latency histogram.
        ``appearances_kept``, ``pictures_kept``: the newest appearances, and the pictures of the best faces, that
        each identity keeps."""
        self.keys = SpaceKeys(space)
        self.client = client
        self.space = space
        self.writer_token = writer_token
        self.appearances_kept = appearances_kept
        self.pictures_kept = pictures_kept
        self._observe = observe
        self._script_keys = self.keys.script
        self.snapshots = SnapshotParts(client, self.keys.of("snapshot"), self.keys.of(Key.WRITER), space)
        self.reads = SpaceReads(client, space)  # what the API reads: identities, pictures, timelines
        self._apply = client.register_script(lua("apply_batch.lua"))
        #: Operations queued by apply() and apply_event() inside batch(); None outside it.
        self._pending: list[list[Any]] | None = None
        self._pending_ids: set[str] = set()
        #: The metadata of faces queued in the batch, and the faces its corrections forget: a correction in the
        #: same batch as the faces it touches reads them from here (Redis has them only at the batch's end).
        self._pending_metas: dict[int, FaceMeta] = {}
        self._pending_forgotten: set[int] = set()
        #: Faces this store's writer knows are applied (from ``load``, then its own batches): the apply script
        #: refuses a batch when Redis holds another count. None (no check) until ``load``.
        self._expected_count: int | None = None

    @contextmanager
    def _timed(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            if self._observe is not None:
                self._observe(operation, time.perf_counter() - started)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Applies the faces and events of the block in one round trip at its end; none of them if it raises.

        Inside the block, ``apply`` and ``apply_event`` only queue: the caller must not treat them as durable
        before the block has ended (the cluster worker commits its Kafka transaction after it).
        """
        self._pending, self._pending_ids = [], set()
        try:
            yield
            self._run(self._pending)
        finally:
            self._pending, self._pending_ids = None, set()
            self._pending_metas, self._pending_forgotten = {}, set()

    def apply(self, delta: FaceDelta) -> bool:
        """Applies one face's delta (queued inside ``batch()``); False when the face was applied before."""
        meta = delta.meta
        if self._pending is not None:
            self._pending_metas[delta.label] = meta
        operation: list[Any] = ["F", meta.face_id, delta.label, records.pack_meta(meta)]
        operation += [np.asarray(delta.embedding, EMBEDDING_DTYPE).tobytes(), len(delta.neighbours)]
        for label, neighbours in delta.neighbours.items():
            operation += [label, pack_neighbours(neighbours)]
        operation.append(len(delta.parents))
        for absorbed, survivor in delta.parents.items():
            operation += [absorbed, survivor]
        operation += [1, delta.label, pack_links(delta.links)] if delta.links else [0]
        operation.append(len(delta.clusters))
        for root, summary in delta.clusters.items():
            operation += [root, "" if summary is None else records.summary_json(summary)]
        if delta.offset is None:
            operation += ["", "", ""]  # no input offset, no outbox entry
        else:
            partition, offset = delta.offset
            entry = OutboxEntry(
                partition, offset, meta.face_id, delta.cluster, delta.merges, meta.camera, meta.timestamp
            )
            operation += [partition, offset, entry.to_json()]
        operation.append(delta.thumbnail or "")
        return self._queue_or_run(meta.face_id, operation)

    def apply_correction(self, delta: CorrectionDelta) -> bool:
        """Applies a correction's delta (queued inside ``batch()``); False when its command was applied before.
        A step of an erasure other than its last is written at once, after what the batch queued before it, so
        each step is one bounded script call."""
        fields: list[tuple[Key, str, str | bytes]] = [
            (Key.PARENTS, str(label), "" if parent == label else str(parent)) for label, parent in delta.parents.items()
        ]
        fields += [(Key.CLUSTERS, str(r), records.summary_json(s) if s else "") for r, s in delta.clusters.items()]
        fields += [(Key.MARKS, str(label), json.dumps(marks) if marks else "") for label, marks in delta.marks.items()]
        fields += [(Key.LINKS, name, pack_links(links) if links else "") for name, links in delta.links.items()]
        fields += [
            (Key.NEIGHBOURS, str(label), "" if label in delta.forgotten else pack_neighbours(neighbours))
            for label, neighbours in delta.neighbours.items()
        ]
        if self._pending is not None:
            self._pending_forgotten.update(delta.forgotten)
        for label, face_id in delta.forgotten.items():
            # The face id only as a one-way tombstone (so a replayed record of it is not applied again).
            fields += [(Key.FACES, face_id, ""), (Key.META, str(label), ""), (Key.EMBEDDINGS, str(label), "")]
            fields += [(Key.THUMBNAILS, face_id, ""), (Key.APPEARANCE_PICTURES, face_id, "")]
            fields.append((Key.TOMBSTONES, tombstone(face_id), str(label)))
        # Only the command's id is kept (its outcome may name faces a later forget erases).
        operation: list[Any] = ["C", delta.command_id, "1", len(fields)]
        for key, field, value in fields:
            operation += [key.number, field, value]
        if delta.offset is None:
            operation += ["", "", ""]
        else:
            partition, offset = delta.offset
            entry = OutboxEntry(partition, offset, delta.command_id, -1, (), "", 0.0, correction=delta.outcome)
            operation += [partition, offset, entry.to_json()] if delta.final else ["", "", entry.to_json()]
        if not delta.final and self._pending is not None:
            queued, self._pending = self._pending, []
            self._run(queued)
            return self._run([operation]) == [1]
        return self._queue_or_run(delta.command_id, operation)

    def labels_where(self, camera: str | None, before: float | None, stored_before: float | None) -> list[int]:
        stored = {
            int(label)
            for label, raw in self.client.hscan_iter(self.keys.of(Key.META), count=5_000)
            if selects(records.parse_meta(raw), camera, before, stored_before)
        }
        queued = {label for label, meta in self._pending_metas.items() if selects(meta, camera, before, stored_before)}
        return sorted((stored | queued) - self._pending_forgotten)

    def forgotten(self) -> dict[int, str]:
        """Label -> tombstone of every forgotten face."""
        return forgotten_faces(self.client, self.keys)

    def metas(self, labels: list[int]) -> list[FaceMeta]:
        stored = [label for label in labels if label not in self._pending_metas]
        raw = self.client.hmget(self.keys.of(Key.META), [str(label) for label in stored]) if stored else []
        if not all(isinstance(r, bytes) for r in raw):
            raise StoreError(f"identity space {self.space}: a face's metadata is missing")
        found = {label: records.parse_meta(r) for label, r in zip(stored, raw, strict=True) if isinstance(r, bytes)}
        return [self._pending_metas[label] if label in self._pending_metas else found[label] for label in labels]

    def apply_event(
        self, event_id: str, entry: OutboxEntry, sighting: Sighting | None = None, picture: bytes | None = None
    ) -> bool:
        """Records an event that changes no clustering state, with its input offset; False if seen before. A
        track's ``sighting`` joins its identity's timeline, with the ``picture`` of its best face if given."""
        if self._pending is not None and (
            event_id in self._pending_ids or self.client.hexists(self.keys.of(Key.FACES), event_id)
        ):
            return False
        operation = ["E", event_id, entry.partition, entry.offset, entry.to_json()]
        operation += ["" if sighting is None else sighting.to_json(self.appearances_kept), picture or ""]
        return self._queue_or_run(event_id, operation)

    def applied_through(self, partition: int, offset: int) -> None:
        """Records that every face of this space up to ``offset`` on ``partition`` is applied (fenced)."""
        self._run([["O", partition, offset]])

    def _queue_or_run(self, identifier: str, operation: list[Any]) -> bool:
        if self._pending is None:
            return self._run([operation]) == [1]
        self._pending.append(operation)
        self._pending_ids.add(identifier)
        return True

    def _run(self, operations: list[list[Any]]) -> list[int]:
        if not operations:
            return []
        expected = "" if self._expected_count is None else self._expected_count
        args: list[Any] = [self.writer_token, expected, len(operations), self.pictures_kept]
        for operation in operations:
            args += operation
        try:
            with self._timed("apply"):
                results = [int(applied) for applied in self._apply(keys=self._script_keys, args=args)]
        except ResponseError as exc:
            first = operations[0][1]
            raise StoreError(f"Redis refused {len(operations)} operation(s) from {first} on: {exc}") from exc
        if self._expected_count is not None:
            self._expected_count += sum(op[0] == "F" and done for op, done in zip(operations, results, strict=True))
        return results

    def outbox(self) -> list[OutboxEntry]:
        """Events of applied faces, in the order they were applied, that were not yet marked published."""
        with self._timed("outbox"):
            raw_entries = self.client.lrange(self.keys.of(Key.OUTBOX), 0, -1)
        return [OutboxEntry.from_json(raw) for raw in raw_entries]

    def mark_published(self, entries: int) -> None:
        """Drops the first ``entries`` of the outbox, once they are durable on the identities topic."""
        if entries:
            with self._timed("outbox"):
                self.client.ltrim(self.keys.of(Key.OUTBOX), entries, -1)

    def index_sizes(self, clusters: dict[int, ClusterSummary]) -> None:
        """Builds the sizes and names indexes of a space stored before they existed (the writer, once, at load)."""
        named: dict[Any, Any] = {str(r): summary.name for r, summary in clusters.items() if summary.name is not None}
        if self.client.hlen(self.keys.of(Key.NAMES)) != len(named):
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self.keys.of(Key.NAMES))
            if named:
                pipe.hset(self.keys.of(Key.NAMES), mapping=named)
            pipe.execute()
        if self.client.zcard(self.keys.of(Key.SIZES)) == len(clusters):
            return
        scores = [(str(root), records.size_score(summary.size, root)) for root, summary in clusters.items()]
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.of(Key.SIZES))
        for start in range(0, len(scores), 10_000):
            pipe.zadd(self.keys.of(Key.SIZES), dict(scores[start : start + 10_000]))
        pipe.execute()

    def offsets(self) -> dict[int, int]:
        """Partition -> offset of the last face applied from it."""
        return {int(k): int(v) for k, v in self.client.hgetall(self.keys.of(Key.OFFSETS)).items()}

    def count(self) -> int:
        return int(self.client.get(self.keys.of(Key.COUNT)) or 0)

    def save_snapshot(self, data: bytes, count: int) -> None:
        """Stores an index snapshot of the first ``count`` faces, fenced by this store's writer token."""
        with self._timed("snapshot"):
            self.snapshots.save(data, count, self.writer_token)

    def snapshot(self) -> tuple[bytes | None, int]:
        """The current index snapshot and the number of faces it covers; (None, 0) when there is none."""
        return self.snapshots.load()

    def embeddings(self, start: int, stop: int, page: int = 5_000) -> Iterator[NDArray[np.float32]]:
        """The embeddings of faces ``start`` to ``stop`` - 1, by pages (FORGOTTEN_VECTOR for a forgotten face)."""
        return paged_embeddings(self.client, self.keys, start, stop, page)

    def load(self, progress: Callable[[int, int], None] | None = None, page: int = 5_000) -> StoredState:
        """The whole state, by pages of ``page`` faces (a round trip each); ``progress(loaded, total)`` after each."""
        with self._timed("load"):
            total = self.count()
            state = StoredState(offsets=self.offsets())
            state.snapshot, state.snapshot_count = self.snapshot()
            loaded = load_state(self.client, self.keys, state, total, progress=progress, page=page)
        if self.writer_token:
            self.index_sizes(loaded.clusters)
        self._expected_count = total
        return loaded

    def clear(self) -> None:
        """Deletes the whole identity space."""
        self.snapshots.clear()
        self.client.delete(*self._script_keys)
