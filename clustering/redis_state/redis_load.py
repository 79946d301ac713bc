"""An identity space's whole clustering state read back from Redis, a page of faces per round trip, so that a
large space neither blocks Redis with one huge reply nor holds two copies of itself in this process at once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import NDArray

from clustering.packed import unpack_links, unpack_neighbours
from clustering.redis_state.redis_client import RedisClient
from clustering.redis_state.redis_keys import Key, SpaceKeys
from clustering.redis_state.redis_records import as_text, parse_meta, parse_summary
from clustering.store import EMBEDDING_DTYPE, FORGOTTEN, FORGOTTEN_VECTOR, StoredState, StoreError


def forgotten_faces(client: RedisClient, keys: SpaceKeys) -> dict[int, str]:
    """Label -> tombstone of every forgotten face."""
    return {int(label): as_text(mark) for mark, label in client.hscan_iter(keys.of(Key.TOMBSTONES), count=5_000)}


def paged_embeddings(
    client: RedisClient, keys: SpaceKeys, start: int, stop: int, page: int
) -> Iterator[NDArray[np.float32]]:
    """The embeddings of faces ``start`` to ``stop`` - 1 (FORGOTTEN_VECTOR, empty, for a forgotten face)."""
    forgotten = forgotten_faces(client, keys)
    for first in range(start, stop, page):
        labels = range(first, min(first + page, stop))
        raws = client.hmget(keys.of(Key.EMBEDDINGS), [str(label) for label in labels])
        for label, raw in zip(labels, raws, strict=True):
            if isinstance(raw, bytes):
                yield np.frombuffer(raw, EMBEDDING_DTYPE).astype(np.float32)
            elif label in forgotten:
                yield FORGOTTEN_VECTOR
            else:
                raise StoreError(f"identity space {keys.space}: the embedding of face {label} is missing")


def load_state(
    client: RedisClient,
    keys: SpaceKeys,
    state: StoredState,
    total: int,
    *,
    progress: Callable[[int, int], None] | None,
    page: int,
) -> StoredState:
    """Fills ``state`` (which holds the offsets and snapshot already) with the ``total`` faces' records and
    the corrections' state. ``progress(loaded, total)`` is called after each page."""
    tombstones = forgotten_faces(client, keys)
    state.forgotten = set(tombstones)
    state.tombstones = set(tombstones.values())
    for first in range(0, total, page):
        fields = [str(label) for label in range(first, min(first + page, total))]
        pipe = client.pipeline(transaction=False)
        for key in (Key.META, Key.EMBEDDINGS, Key.NEIGHBOURS):
            pipe.hmget(keys.of(key), fields)
        metas, embeddings, neighbours = pipe.execute()
        labels = range(len(state.metas), len(state.metas) + len(fields))
        present: list[bytes] = []
        for label, meta, vector, listed in zip(labels, metas, embeddings, neighbours, strict=True):
            if label in tombstones:
                state.metas.append(FORGOTTEN)
                continue
            if meta is None or vector is None or listed is None:
                raise StoreError(f"identity space {keys.space}: face {label} is incomplete")
            state.metas.append(parse_meta(meta))
            present.append(vector)
            state.neighbours[label] = unpack_neighbours(listed)
        # One conversion per page, not per face: a million small astype calls cost seconds.
        converted = np.frombuffer(b"".join(present), EMBEDDING_DTYPE).astype(np.float32)
        rows = iter(converted.reshape(len(present), -1) if present else ())
        state.embeddings += [FORGOTTEN_VECTOR if label in tombstones else next(rows) for label in labels]
        if progress is not None:
            progress(len(state.metas), total)

    def scan(key: Key) -> Iterator[tuple[bytes, bytes]]:
        yield from client.hscan_iter(keys.of(key), count=page)

    state.parents = {int(k): int(v) for k, v in scan(Key.PARENTS)}
    state.clusters = {int(k): parse_summary(v) for k, v in scan(Key.CLUSTERS)}
    state.links = {as_text(k): unpack_links(v) for k, v in scan(Key.LINKS)}
    state.marks = {int(k): json.loads(v) for k, v in scan(Key.MARKS)}
    state.commands = {as_text(k) for k, _ in scan(Key.COMMANDS)}
    return state
