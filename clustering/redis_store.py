"""The clustering state in Redis, one identity space per hash tag so that it fits one Redis Cluster slot.

Keys, all under ``{fs:<space>}:``: faces (face id -> label), meta, embeddings, neighbours, parents, clusters
(hashes keyed by label or root), offsets (partition -> last applied offset), count, the index snapshot
(clustering/redis_snapshots.py), outbox (events of applied faces not yet published), writer (the lease of
the one active writer), and what corrections keep: links (of unions), marks (of split sides), commands
(applied ids) and tombstones (SHA-1 of forgotten face ids). Records: clustering/redis_records.py.

A batch of faces, events and corrections is applied by one Lua script in one round trip, so each face, its
neighbour-list and union-find changes, its cluster summaries, its input offset and its outgoing events become
durable together or not at all; a writer that lost its lease is refused by that same script (fencing).
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

from clustering.lua_scripts import lua
from clustering.packed import pack_links, pack_neighbours, unpack_links, unpack_neighbours
from clustering.redis_client import RedisClient
from clustering.redis_records import OutboxEntry, as_text, pack_meta, parse_meta, parse_summary, summary_json
from clustering.redis_snapshots import SnapshotParts
from clustering.store import (
    EMBEDDING_DTYPE,
    FORGOTTEN,
    FORGOTTEN_VECTOR,
    ClusterSummary,
    CorrectionDelta,
    FaceDelta,
    FaceMeta,
    StoredState,
    StoreError,
    selects,
    tombstone,
)

_HASHES = ("faces", "meta", "embeddings", "neighbours", "parents", "clusters", "offsets")
#: The apply script's KEYS after the hashes and count, outbox and writer (apply_batch.lua).
_CORRECTION_HASHES = ("links", "marks", "commands", "tombstones")
#: KEYS numbers (1-based, as the script counts) of what a correction changes.
_FACES, _META, _EMBEDDINGS, _NEIGHBOURS, _PARENTS, _CLUSTERS, _LINKS, _MARKS, _TOMBSTONES = 1, 2, 3, 4, 5, 6, 11, 12, 14


class RedisStore:
    def __init__(
        self,
        client: RedisClient,
        space: str = "default",
        writer_token: str = "",
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        """``writer_token``: the token of the writer lease this process holds; writes are refused without it.
        ``observe``: called with (operation, seconds) after each call, e.g. to feed a latency histogram."""
        if not space or any(c in space for c in "{}: "):
            raise ValueError(f"identity space {space!r} must be non-empty without braces, colons or spaces")
        self.client = client
        self.space = space
        self.writer_token = writer_token
        self._observe = observe
        prefix = f"{{fs:{space}}}:"
        # The apply script's KEYS, in its order (apply_batch.lua).
        self._keys = [prefix + name for name in (*_HASHES, "count", "outbox", "writer", *_CORRECTION_HASHES)]
        self._offsets_key, self._count_key, self._outbox_key = prefix + "offsets", prefix + "count", prefix + "outbox"
        self._embeddings_key = prefix + "embeddings"
        self.snapshots = SnapshotParts(client, prefix + "snapshot", prefix + "writer", space)
        self._apply = client.register_script(lua("apply_batch.lua"))
        #: Operations queued by apply() and apply_event() inside batch(); None outside it.
        self._pending: list[list[Any]] | None = None
        self._pending_ids: set[str] = set()

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

    def apply(self, delta: FaceDelta) -> bool:
        """Applies one face's delta (queued inside ``batch()``); False when the face was applied before."""
        meta = delta.meta
        operation: list[Any] = ["F", meta.face_id, delta.label, pack_meta(meta)]
        operation += [np.asarray(delta.embedding, EMBEDDING_DTYPE).tobytes(), len(delta.neighbours)]
        for label, neighbours in delta.neighbours.items():
            operation += [label, pack_neighbours(neighbours)]
        operation.append(len(delta.parents))
        for absorbed, survivor in delta.parents.items():
            operation += [absorbed, survivor]
        operation += [1, delta.label, pack_links(delta.links)] if delta.links else [0]
        operation.append(len(delta.clusters))
        for root, summary in delta.clusters.items():
            operation += [root, "" if summary is None else summary_json(summary)]
        if delta.offset is None:
            operation += ["", "", ""]  # no input offset, no outbox entry
        else:
            partition, offset = delta.offset
            entry = OutboxEntry(
                partition, offset, meta.face_id, delta.cluster, delta.merges, meta.camera, meta.timestamp
            )
            operation += [partition, offset, entry.to_json()]
        return self._queue_or_run(meta.face_id, operation)

    def apply_correction(self, delta: CorrectionDelta) -> bool:
        """Applies a correction's delta (queued inside ``batch()``); False when its command was applied before."""
        fields: list[tuple[int, str, str | bytes]] = [
            (_PARENTS, str(label), "" if parent == label else str(parent)) for label, parent in delta.parents.items()
        ]
        fields += [(_CLUSTERS, str(r), "" if s is None else summary_json(s)) for r, s in delta.clusters.items()]
        fields += [(_MARKS, str(label), json.dumps(marks) if marks else "") for label, marks in delta.marks.items()]
        fields += [(_LINKS, name, pack_links(links) if links else "") for name, links in delta.links.items()]
        fields += [
            (_NEIGHBOURS, str(label), "" if label in delta.forgotten else pack_neighbours(neighbours))
            for label, neighbours in delta.neighbours.items()
        ]
        for label, face_id in delta.forgotten.items():
            # The face id only as a one-way tombstone (so a replayed record of it is not applied again).
            fields += [(_FACES, face_id, ""), (_META, str(label), ""), (_EMBEDDINGS, str(label), "")]
            fields.append((_TOMBSTONES, tombstone(face_id), str(label)))
        # Only the command's id is kept (its outcome may name faces a later forget erases).
        operation: list[Any] = ["C", delta.command_id, "1", len(fields)]
        for field in fields:
            operation += field
        if delta.offset is None:
            operation += ["", "", ""]
        else:
            partition, offset = delta.offset
            entry = OutboxEntry(partition, offset, delta.command_id, -1, (), "", 0.0, correction=delta.outcome)
            operation += [partition, offset, entry.to_json()]
        return self._queue_or_run(delta.command_id, operation)

    def labels_where(self, camera: str | None, before: float | None, stored_before: float | None) -> list[int]:
        return [
            int(label)
            for label, raw in self.client.hscan_iter(self._keys[1], count=5_000)
            if selects(parse_meta(raw), camera, before, stored_before)
        ]

    def forgotten(self) -> dict[int, str]:
        """Label -> tombstone of every forgotten face."""
        return {int(label): as_text(mark) for mark, label in self.client.hscan_iter(self._keys[13], count=5_000)}

    def metas(self, labels: list[int]) -> list[FaceMeta]:
        raw = self.client.hmget(self._keys[1], [str(label) for label in labels])
        metas = [parse_meta(r) for r in raw if isinstance(r, bytes)]
        if len(metas) != len(labels):
            raise StoreError(f"identity space {self.space}: a face's metadata is missing")
        return metas

    def apply_event(self, event_id: str, entry: OutboxEntry) -> bool:
        """Records an event that changes no clustering state, with its input offset; False if seen before."""
        if self._pending is not None and (
            event_id in self._pending_ids or self.client.hexists(self._keys[0], event_id)
        ):
            return False
        return self._queue_or_run(event_id, ["E", event_id, entry.partition, entry.offset, entry.to_json()])

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
        args: list[Any] = [self.writer_token, len(operations)]
        for operation in operations:
            args += operation
        try:
            with self._timed("apply"):
                return [int(applied) for applied in self._apply(keys=self._keys, args=args)]
        except ResponseError as exc:
            first = operations[0][1]
            raise StoreError(f"Redis refused {len(operations)} operation(s) from {first} on: {exc}") from exc

    def outbox(self) -> list[OutboxEntry]:
        """Events of applied faces, in the order they were applied, that were not yet marked published."""
        with self._timed("outbox"):
            raw_entries = self.client.lrange(self._outbox_key, 0, -1)
        return [OutboxEntry.from_json(raw) for raw in raw_entries]

    def mark_published(self, entries: int) -> None:
        """Drops the first ``entries`` of the outbox, once they are durable on the identities topic."""
        if entries:
            with self._timed("outbox"):
                self.client.ltrim(self._outbox_key, entries, -1)

    def cluster_summaries(self) -> list[ClusterSummary]:
        """Every cluster's summary, read by pages (for readers that hold no engine)."""
        return [parse_summary(raw) for _, raw in self.client.hscan_iter(self._keys[5], count=5_000)]

    def cluster(self, cluster_id: int) -> ClusterSummary | None:
        """The summary of the cluster that ``cluster_id`` is in now (it may have been merged away since)."""
        parents_key, clusters_key = self._keys[4], self._keys[5]
        root = cluster_id
        for _ in range(10_000):  # union-find paths are short; a bound against a corrupt cycle
            parent = self.client.hget(parents_key, str(root))
            if parent is None:
                break
            root = int(parent)
        raw = self.client.hget(clusters_key, str(root))
        return None if not isinstance(raw, bytes) else parse_summary(raw)

    def offsets(self) -> dict[int, int]:
        """Partition -> offset of the last face applied from it."""
        return {int(k): int(v) for k, v in self.client.hgetall(self._offsets_key).items()}

    def count(self) -> int:
        return int(self.client.get(self._count_key) or 0)

    def save_snapshot(self, data: bytes, count: int) -> None:
        """Stores an index snapshot of the first ``count`` faces, fenced by this store's writer token."""
        with self._timed("snapshot"):
            self.snapshots.save(data, count, self.writer_token)

    def snapshot(self) -> tuple[bytes | None, int]:
        """The current index snapshot and the number of faces it covers; (None, 0) when there is none."""
        return self.snapshots.load()

    def embeddings(self, start: int, stop: int, page: int = 5_000) -> Iterator[NDArray[np.float32]]:
        """The embeddings of faces ``start`` to ``stop`` - 1, read a page at a time (FORGOTTEN_VECTOR, empty, for
        a forgotten face)."""
        forgotten = self.forgotten()
        for first in range(start, stop, page):
            labels = range(first, min(first + page, stop))
            raws = self.client.hmget(self._embeddings_key, [str(label) for label in labels])
            for label, raw in zip(labels, raws, strict=True):
                yield self._vector(label, raw, forgotten)

    def _vector(self, label: int, raw: object, forgotten: dict[int, str]) -> NDArray[np.float32]:
        if isinstance(raw, bytes):
            return np.frombuffer(raw, EMBEDDING_DTYPE).astype(np.float32)
        if label in forgotten:
            return FORGOTTEN_VECTOR
        raise StoreError(f"identity space {self.space}: the embedding of face {label} is missing")

    def load(self, progress: Callable[[int, int], None] | None = None, page: int = 5_000) -> StoredState:
        """The whole state, read by pages of ``page`` faces (one round trip each), so that a large space
        neither blocks Redis with one huge reply nor holds two copies of itself in this process at once.
        ``progress(loaded, total)`` is called after each page."""
        meta_key, embeddings_key, neighbours_key, parents_key, clusters_key, offsets_key = self._keys[1:7]
        with self._timed("load"):
            total = self.count()
            state = StoredState(offsets={int(k): int(v) for k, v in self.client.hgetall(offsets_key).items()})
            state.snapshot, state.snapshot_count = self.snapshot()
            tombstones = self.forgotten()
            state.forgotten = set(tombstones)
            state.tombstones = set(tombstones.values())
            for first in range(0, total, page):
                fields = [str(label) for label in range(first, min(first + page, total))]
                pipe = self.client.pipeline(transaction=False)
                for key in (meta_key, embeddings_key, neighbours_key):
                    pipe.hmget(key, fields)
                metas, embeddings, neighbours = pipe.execute()
                labels = range(len(state.metas), len(state.metas) + len(fields))
                present: list[bytes] = []
                for label, meta, vector, listed in zip(labels, metas, embeddings, neighbours, strict=True):
                    if label in tombstones:
                        state.metas.append(FORGOTTEN)
                        continue
                    if meta is None or vector is None or listed is None:
                        raise StoreError(f"identity space {self.space}: face {label} is incomplete")
                    state.metas.append(parse_meta(meta))
                    present.append(vector)
                    state.neighbours[label] = unpack_neighbours(listed)
                # One conversion per page, not per face: a million small astype calls cost seconds.
                converted = np.frombuffer(b"".join(present), EMBEDDING_DTYPE).astype(np.float32)
                rows = iter(converted.reshape(len(present), -1) if present else ())
                state.embeddings += [FORGOTTEN_VECTOR if label in tombstones else next(rows) for label in labels]
                if progress is not None:
                    progress(len(state.metas), total)
            state.parents = {int(k): int(v) for k, v in self.client.hscan_iter(parents_key, count=page)}
            state.clusters = {int(k): parse_summary(v) for k, v in self.client.hscan_iter(clusters_key, count=page)}
            links_key, marks_key, commands_key = self._keys[10:13]
            state.links = {as_text(k): unpack_links(v) for k, v in self.client.hscan_iter(links_key, count=page)}
            state.marks = {int(k): json.loads(v) for k, v in self.client.hscan_iter(marks_key, count=page)}
            state.commands = {as_text(k) for k, _ in self.client.hscan_iter(commands_key, count=page)}
        return state

    def clear(self) -> None:
        """Deletes the whole identity space."""
        self.snapshots.clear()
        self.client.delete(*self._keys)
