"""The apply script on the real Redis, as a writer relies on it: a batch is checked whole before anything is
written (a store that lost acknowledged writes, a face out of order), a correction sees the faces queued in
its own batch, and the clusters are listed largest first from the sorted index the script keeps."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from clustering.corrections import ForgetFaces
from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_keys import Key
from clustering.redis_state.redis_records import OutboxEntry
from clustering.redis_state.redis_store import RedisStore
from clustering.store import StoreError
from tests.synthetic_faces import DIM, identities, settings


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    store = RedisStore(connect(redis_url), f"test-{uuid.uuid4().hex[:12]}")
    yield store
    store.clear()


def _applied(engine: OnlineRankOrder, store: RedisStore, vectors: np.ndarray, first: int, stop: int) -> None:
    """Faces ``first`` to ``stop`` - 1 of ``vectors`` added in one batch, each with its offset on partition 0."""
    with store.batch():
        for i in range(first, stop):
            engine.add(f"c:{i}:0", vectors[i], offset=(0, i))


def test_a_store_that_lost_acknowledged_writes_refuses_the_next_batch_whole(store: RedisStore) -> None:
    vectors, _ = identities(10, 3, 0.3, seed=7)
    engine = OnlineRankOrder(DIM, settings(), store)
    _applied(engine, store, vectors, 0, 10)
    writer = RedisStore(store.client, store.space)  # the writer after a restart: it loads, then applies
    engine = OnlineRankOrder.restore(writer, DIM, settings())
    replica = {key: value for key in store.keys.script if (value := store.client.dump(key)) is not None}
    _applied(engine, writer, vectors, 10, 15)
    # A failover promotes a replica that never got that batch: Redis lost five acknowledged faces.
    for key, value in replica.items():
        store.client.restore(key, 0, value, replace=True)
    before = (store.count(), store.offsets(), len(store.outbox()))
    entry = OutboxEntry(0, 15, "c:14:0", 0, (), "c", 0.0, appearance="{}")
    with pytest.raises(StoreError, match="FACESTREAM_COUNT"), writer.batch():
        writer.apply_event("track#1", entry)  # an appearance only: it would move the offset past the lost
    assert (store.count(), store.offsets(), len(store.outbox())) == before == (10, {0: 9}, 10)


def test_a_batch_with_a_face_out_of_order_writes_nothing(store: RedisStore) -> None:
    vectors, _ = identities(10, 3, 0.3, seed=8)
    engine = OnlineRankOrder(DIM, settings(), store)
    _applied(engine, store, vectors, 0, 5)
    # A face already in Redis that the engine takes for new (another writer wrote it) shifts every label after it.
    store.client.hset(store.keys.of(Key.FACES), "c:6:0", 5)

    with pytest.raises(StoreError, match="has label"):
        _applied(engine, store, vectors, 5, 8)
    assert store.count() == 5
    assert store.offsets() == {0: 4}


def test_a_correction_reads_the_faces_queued_in_its_own_batch(store: RedisStore) -> None:
    vectors, _ = identities(10, 3, 0.3, seed=9)
    engine = OnlineRankOrder(DIM, settings(), store)
    with store.batch():
        for i, vector in enumerate(vectors[:6]):
            engine.add(f"c:{i}:0", vector, offset=(0, i))
        # Nothing of the batch is in Redis yet, but a forget by time or a regroup must see its faces.
        assert store.labels_where(None, None, None) == list(range(6))
        assert [meta.face_id for meta in store.metas([5, 0])] == ["c:5:0", "c:0:0"]
    assert store.labels_where(None, None, None) == list(range(6))


def _listed(store: RedisStore) -> list[tuple[int, int]]:
    total, page = store.reads.largest_clusters(0, 10_000)
    assert total == len(page)
    return [(summary.id, summary.size) for summary in page]


def _expected(engine: OnlineRankOrder) -> list[tuple[int, int]]:
    return sorted(((s.id, s.size) for s in engine.clusters().values()), key=lambda pair: (-pair[1], pair[0]))


def test_clusters_are_listed_largest_first_from_an_index_the_apply_script_keeps(store: RedisStore) -> None:
    vectors, _ = identities(12, 5, 0.3, seed=10)
    engine = OnlineRankOrder(DIM, settings(), store)
    _applied(engine, store, vectors, 0, 40)
    assert _listed(store) == _expected(engine)
    biggest = _expected(engine)[0][0]
    engine.correct(ForgetFaces("f-1", (), biggest, None, None, None))  # a correction regroups and removes
    assert _listed(store) == _expected(engine)
    total, page = store.reads.largest_clusters(2, 3)  # a page
    assert (total, [(s.id, s.size) for s in page]) == (len(_expected(engine)), _expected(engine)[2:5])


def test_a_space_stored_before_the_index_gets_it_when_its_writer_loads_it(store: RedisStore) -> None:
    vectors, _ = identities(12, 5, 0.3, seed=11)
    engine = OnlineRankOrder(DIM, settings(), store)
    _applied(engine, store, vectors, 0, 40)
    store.client.delete(store.keys.of(Key.SIZES))
    assert store.reads.largest_clusters(0, 10) == (0, [])
    RedisStore(store.client, store.space, writer_token="a-writer").load()
    assert _listed(store) == _expected(engine)
