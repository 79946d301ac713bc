"""The clustering state in Redis, one identity space per hash tag so that it fits one Redis Cluster slot.

Keys, all under ``{fs:<space>}:``: faces (face id -> label), meta, embeddings, neighbours, parents, clusters
(hashes keyed by label or root), offsets (partition -> last applied offset), count, snapshot and
snapshot_count, outbox (events of applied faces not yet published) and writer (the lease of the one
active writer). Each face is applied by one Lua script, so the face, its neighbour-list and union-find
changes, its cluster summaries, its input offset and its outgoing events become durable together or not at
all; a writer that lost its lease is refused by that same script (fencing).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np
import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from clustering.events import Merge
from clustering.store import (
    ClusterSummary,
    FaceDelta,
    FaceMeta,
    StoredState,
    StoreError,
    pack_neighbours,
    unpack_neighbours,
)

_HASHES = ("faces", "meta", "embeddings", "neighbours", "parents", "clusters", "offsets")
#: Snapshots are stored in parts: one Redis string holds at most 512 MB, an index of 250,000 faces more.
SNAPSHOT_PART_BYTES = 64 << 20


def connect(url: str, retries: int = 3, timeout_s: float = 5.0) -> redis.Redis:
    """A client with retries on connection errors, checked now: an unreachable Redis fails at start-up."""
    client = redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    try:
        client.ping()
    except RedisError as exc:
        raise StoreError(f"Redis at {url} is unreachable: {exc}") from exc
    return client


@dataclass(frozen=True)
class OutboxEntry:
    """The events of one applied face, kept in Redis until they are published."""

    partition: int
    offset: int
    face_id: str
    cluster: int
    merges: tuple[Merge, ...]
    camera: str
    timestamp: float
    #: A track's appearance event (JSON) to publish instead of an assignment.
    appearance: str | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["merges"] = [[m.survivor, list(m.absorbed)] for m in self.merges]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> OutboxEntry:
        data: dict[str, Any] = json.loads(raw)
        data["merges"] = tuple(Merge(int(s), tuple(int(a) for a in absorbed)) for s, absorbed in data["merges"])
        return cls(**data)


def _summary_json(summary: ClusterSummary) -> str:
    return json.dumps(asdict(summary), separators=(",", ":"))


def _summary(raw: bytes) -> ClusterSummary:
    data: dict[str, Any] = json.loads(raw)
    return ClusterSummary(
        data["id"],
        data["size"],
        data["first_seen"],
        data["last_seen"],
        tuple(data["cameras"]),
        tuple((float(q), str(f)) for q, f in data["representatives"]),
    )


def _meta(raw: bytes) -> FaceMeta:
    data: dict[str, Any] = json.loads(raw)
    data["cooccurring"] = tuple(data.get("cooccurring", ()))
    return FaceMeta(**data)


class RedisStore:
    def __init__(
        self,
        client: redis.Redis,
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
        # The apply script's KEYS, in its order (apply_face.lua).
        self._keys = [prefix + name for name in (*_HASHES, "count", "outbox", "writer")]
        self._offsets_key, self._count_key, self._outbox_key = prefix + "offsets", prefix + "count", prefix + "outbox"
        self._snapshot_key, self._snapshot_count_key = prefix + "snapshot", prefix + "snapshot_count"
        self._snapshot_parts_key = prefix + "snapshot_parts"
        lua = resources.files("clustering").joinpath("lua")
        self._apply = client.register_script(lua.joinpath("apply_face.lua").read_text(encoding="utf-8"))
        self._apply_event = client.register_script(lua.joinpath("apply_event.lua").read_text(encoding="utf-8"))

    @contextmanager
    def _timed(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            if self._observe is not None:
                self._observe(operation, time.perf_counter() - started)

    def apply(self, delta: FaceDelta) -> bool:
        args: list[Any] = [
            delta.meta.face_id,
            delta.label,
            json.dumps(asdict(delta.meta), separators=(",", ":")),
            np.asarray(delta.embedding, "<f4").tobytes(),
            len(delta.neighbours),
        ]
        for label, neighbours in delta.neighbours.items():
            args += [label, pack_neighbours(neighbours)]
        args.append(len(delta.parents))
        for absorbed, survivor in delta.parents.items():
            args += [absorbed, survivor]
        args.append(len(delta.clusters))
        for root, summary in delta.clusters.items():
            args += [root, "" if summary is None else _summary_json(summary)]
        if delta.offset is None:
            args += ["", "", ""]  # no input offset, no outbox entry
        else:
            partition, offset = delta.offset
            meta = delta.meta
            entry = OutboxEntry(
                partition, offset, meta.face_id, delta.cluster, delta.merges, meta.camera, meta.timestamp
            )
            args += [partition, offset, entry.to_json()]
        args.append(self.writer_token)
        try:
            with self._timed("apply"):
                return bool(self._apply(keys=self._keys, args=args))
        except ResponseError as exc:
            raise StoreError(f"Redis refused face {delta.meta.face_id}: {exc}") from exc

    def apply_event(self, event_id: str, entry: OutboxEntry) -> bool:
        """Records an event that changes no clustering state, with its input offset; False if seen before."""
        keys = [self._keys[0], self._offsets_key, self._outbox_key, self._keys[-1]]
        args: list[str | int] = [event_id, entry.partition, entry.offset, entry.to_json(), self.writer_token]
        try:
            with self._timed("apply"):
                return bool(self._apply_event(keys=keys, args=args))
        except ResponseError as exc:
            raise StoreError(f"Redis refused event {event_id}: {exc}") from exc

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

    def offsets(self) -> dict[int, int]:
        """Partition -> offset of the last face applied from it."""
        return {int(k): int(v) for k, v in self.client.hgetall(self._offsets_key).items()}

    def count(self) -> int:
        return int(self.client.get(self._count_key) or 0)

    def save_snapshot(self, data: bytes, count: int) -> None:
        """Replaces the snapshot, in parts, in one transaction: a reader sees the old one or the new one."""
        parts = [data[i : i + SNAPSHOT_PART_BYTES] for i in range(0, len(data), SNAPSHOT_PART_BYTES)] or [b""]
        previous = int(self.client.get(self._snapshot_parts_key) or 0)
        pipe = self.client.pipeline(transaction=True)
        for number, part in enumerate(parts):
            pipe.set(f"{self._snapshot_key}:{number}", part)
        for number in range(len(parts), previous):
            pipe.delete(f"{self._snapshot_key}:{number}")
        pipe.set(self._snapshot_parts_key, len(parts))
        pipe.set(self._snapshot_count_key, count)
        pipe.execute()

    def load(self) -> StoredState:
        meta, embeddings, neighbours, parents, clusters, offsets = self._keys[1:7]
        pipe = self.client.pipeline(transaction=True)
        for key in (meta, embeddings, neighbours, parents, clusters, offsets):
            pipe.hgetall(key)
        pipe.get(self._snapshot_parts_key)
        pipe.get(self._snapshot_count_key)
        with self._timed("load"):
            raw_meta, raw_emb, raw_nbrs, raw_parents, raw_clusters, raw_offsets, parts, snapshot_count = pipe.execute()
        snapshot = None
        if parts is not None:
            pieces = self.client.mget([f"{self._snapshot_key}:{n}" for n in range(int(parts))])
            chunks = [piece for piece in pieces if isinstance(piece, bytes)]
            if len(chunks) != int(parts):
                raise StoreError(f"identity space {self.space}: a part of the index snapshot is missing")
            snapshot = b"".join(chunks)
        count = len(raw_meta)
        metas = [_meta(raw_meta[str(i).encode()]) for i in range(count)]
        return StoredState(
            metas=metas,
            embeddings=[np.frombuffer(raw_emb[str(i).encode()], "<f4").astype(np.float32) for i in range(count)],
            neighbours={int(k): unpack_neighbours(v) for k, v in raw_nbrs.items()},
            parents={int(k): int(v) for k, v in raw_parents.items()},
            clusters={int(k): _summary(v) for k, v in raw_clusters.items()},
            offsets={int(k): int(v) for k, v in raw_offsets.items()},
            snapshot=snapshot,
            snapshot_count=int(snapshot_count or 0),
        )

    def clear(self) -> None:
        """Deletes the whole identity space."""
        parts = int(self.client.get(self._snapshot_parts_key) or 0)
        snapshot_keys = [f"{self._snapshot_key}:{n}" for n in range(parts)]
        self.client.delete(*self._keys, *snapshot_keys, self._snapshot_parts_key, self._snapshot_count_key)


class WriterLease:
    """One active writer per identity space: a Redis key holding the writer's token, with a time to live.

    The holder renews it well before it expires; a standby takes it once it lapses. The apply script checks
    the token, so a writer that stalled past its lease cannot write after a standby took over.
    """

    def __init__(self, client: redis.Redis, space: str, ttl_s: float) -> None:
        self.client = client
        self.key = f"{{fs:{space}}}:writer"
        self.token = secrets.token_hex(16)
        self.ttl_ms = max(int(ttl_s * 1000), 100)
        lua = resources.files("clustering").joinpath("lua")
        self._renew = client.register_script(lua.joinpath("renew_lease.lua").read_text(encoding="utf-8"))
        self._release = client.register_script(lua.joinpath("release_lease.lua").read_text(encoding="utf-8"))

    def acquire(self) -> bool:
        """True when this worker holds the lease (now or already)."""
        if self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return True
        return self.renew()

    def renew(self) -> bool:
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])

    def holder(self) -> str | None:
        raw = self.client.get(self.key)
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)
