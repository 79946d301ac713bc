"""The clustering state in Redis, one identity space per hash tag so that it fits one Redis Cluster slot.

Keys, all under ``{fs:<space>}:``: faces (face id -> label), meta, embeddings, neighbours, parents, clusters
(hashes keyed by label or root), offsets (partition -> last applied offset), count, snapshot and
snapshot_count. Each face is applied by one Lua script, so the face, its neighbour-list and union-find
changes, its cluster summaries and its input offset become durable together or not at all.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from typing import Any

import numpy as np
import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

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


class RedisStore:
    def __init__(self, client: redis.Redis, space: str = "default") -> None:
        if not space or any(c in space for c in "{}: "):
            raise ValueError(f"identity space {space!r} must be non-empty without braces, colons or spaces")
        self.client = client
        self.space = space
        prefix = f"{{fs:{space}}}:"
        self._keys = [prefix + name for name in (*_HASHES, "count")]
        self._snapshot_key, self._snapshot_count_key = prefix + "snapshot", prefix + "snapshot_count"
        self._snapshot_parts_key = prefix + "snapshot_parts"
        script = resources.files("clustering").joinpath("lua/apply_face.lua").read_text(encoding="utf-8")
        self._apply = client.register_script(script)

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
        args += ["", ""] if delta.offset is None else list(delta.offset)
        try:
            return bool(self._apply(keys=self._keys, args=args))
        except ResponseError as exc:
            raise StoreError(f"Redis refused face {delta.meta.face_id}: {exc}") from exc

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
        raw_meta, raw_emb, raw_nbrs, raw_parents, raw_clusters, raw_offsets, parts, snapshot_count = pipe.execute()
        snapshot = None
        if parts is not None:
            pieces = self.client.mget([f"{self._snapshot_key}:{n}" for n in range(int(parts))])
            chunks = [piece for piece in pieces if isinstance(piece, bytes)]
            if len(chunks) != int(parts):
                raise StoreError(f"identity space {self.space}: a part of the index snapshot is missing")
            snapshot = b"".join(chunks)
        count = len(raw_meta)
        metas = [FaceMeta(**json.loads(raw_meta[str(i).encode()])) for i in range(count)]
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
