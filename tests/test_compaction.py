"""The writer's state at scale: snapshots stored off the hot path, restores by pages, a lease kept by its own thread."""

from __future__ import annotations

import dataclasses
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from clustering.engine import OnlineRankOrder
from clustering.index import HnswIndex
from clustering.redis_state.compaction import Compactor, SnapshotJob, store_snapshot
from clustering.redis_state.hnsw_format import SnapshotFormatError, strip_vectors, write_with_vectors
from clustering.redis_state.lease import LeaseKeeper, WriterLease
from clustering.redis_state.redis_client import RedisAddress, RedisClient, connect
from clustering.redis_state.redis_records import OutboxEntry
from clustering.redis_state.redis_store import RedisStore
from clustering.scores import score_clustering
from clustering.store import FaceMeta, StoreError
from tests.synthetic_faces import DIM, identities, settings


@pytest.fixture
def client(redis_url: str) -> RedisClient:
    return connect(redis_url)


@pytest.fixture
def store(client: redis.Redis) -> Iterator[RedisStore]:
    store = RedisStore(client, f"test-{uuid.uuid4().hex[:12]}")
    yield store
    store.clear()


def _filled(store: RedisStore, count: int) -> tuple[OnlineRankOrder, list[int]]:
    vectors, people = identities(count // 4, 4, 0.3, seed=5)
    engine = OnlineRankOrder(DIM, settings(), store)
    for i, vector in enumerate(vectors[:count]):
        engine.add(f"c:{i}:0", vector)
    return engine, people


def _more(engine: OnlineRankOrder, count: int) -> None:
    vectors, _ = identities(count // 4 + 1, 4, 0.3, seed=6)
    first = len(engine)
    for i, vector in enumerate(vectors[:count], start=first):
        engine.add(f"c:{i}:0", vector)


def test_a_snapshot_of_the_running_index_restores_every_cluster_and_is_stored_in_parts(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("clustering.redis_state.redis_snapshots.SNAPSHOT_PART_BYTES", 1_500)
    engine, _ = _filled(store, 32)  # four whole insert blocks of 8
    store_snapshot(engine.index, store, DIM)
    older, _ = store.snapshot()
    _more(engine, 10)  # one more block in the index, two faces pending
    snapshot, covered = store.snapshot()
    assert covered == 32
    assert snapshot is not None
    assert len(snapshot) > 3_000  # three parts or more
    assert OnlineRankOrder.restore(store, DIM, settings()).labels() == engine.labels()
    store_snapshot(engine.index, store, DIM)
    assert older is not None
    store.save_snapshot(older, 32)  # an older one never replaces a newer
    assert store.snapshot()[1] == 40
    # Exactly one generation of parts is kept; clearing the space leaves nothing behind.
    parts = [k for k in store.client.scan_iter(f"{{fs:{store.space}}}:snapshot:*")]
    assert len({k.split(b":")[-2] for k in parts}) == 1
    store.clear()
    assert not list(store.client.scan_iter(f"{{fs:{store.space}}}:*"))


def test_a_restore_from_a_snapshot_rebuilds_the_running_graph_exactly(store: RedisStore) -> None:
    engine, _ = _filled(store, 40)
    store_snapshot(engine.index, store, DIM)
    restored = OnlineRankOrder.restore(store, DIM, settings())
    vectors, _ = identities(10, 4, 0.3, seed=11)
    for query in vectors:
        labels, sims = engine.index.query(query, 10)
        again, again_sims = restored.index.query(query, 10)
        assert again.tolist() == labels.tolist()
        np.testing.assert_allclose(again_sims, sims, atol=1e-6)


def test_a_writer_that_lost_its_lease_cannot_store_a_snapshot(store: RedisStore, client: redis.Redis) -> None:
    engine, _ = _filled(store, 24)
    other = WriterLease(client, store.space, ttl_s=30)
    assert other.acquire()
    fenced = RedisStore(client, store.space, writer_token="not-the-holder")
    with pytest.raises(StoreError, match="lease"):
        store_snapshot(engine.index, fenced, DIM)
    assert store.snapshot() == (None, 0)
    assert not list(client.scan_iter(f"{{fs:{store.space}}}:snapshot:*"))  # its parts were removed
    other.release()


def test_a_restart_from_a_snapshot_keeps_every_cluster_and_clusters_the_rest_as_well(store: RedisStore) -> None:
    vectors, people = identities(60, 5, 0.3, seed=9)
    reference = RedisStore(store.client, f"{store.space}-u")
    uninterrupted = OnlineRankOrder(DIM, settings(), reference)
    for i, vector in enumerate(vectors):
        uninterrupted.add(f"c:{i}:0", vector)
    first = OnlineRankOrder(DIM, settings(), store)
    for i, vector in enumerate(vectors[:152]):
        first.add(f"c:{i}:0", vector)
    store_snapshot(first.index, store, DIM)
    for i, vector in enumerate(vectors[152:200], start=152):
        first.add(f"c:{i}:0", vector)
    before = first.labels()
    resumed = OnlineRankOrder.restore(store, DIM, settings())
    assert resumed.labels() == before
    for i, vector in enumerate(vectors[200:], start=200):
        resumed.add(f"c:{i}:0", vector)
    ids = [f"c:{i}:0" for i in range(len(vectors))]
    resumed_labels, uninterrupted_labels = resumed.labels(), uninterrupted.labels()
    resumed_f = score_clustering(people, [resumed_labels[i] for i in ids]).bcubed_f
    uninterrupted_f = score_clustering(people, [uninterrupted_labels[i] for i in ids]).bcubed_f
    assert resumed_f >= uninterrupted_f - 0.01
    reference.clear()


def test_restore_reads_by_pages_and_reports_progress(store: RedisStore) -> None:
    engine, _ = _filled(store, 40)
    seen: list[tuple[int, int]] = []
    paged = store.load(lambda loaded, total: seen.append((loaded, total)), page=7)
    assert seen[-1] == (40, 40)
    assert len(seen) == 6
    whole = store.load(page=1_000)
    assert paged.metas == whole.metas
    assert paged.neighbours == whole.neighbours
    assert paged.clusters == whole.clusters
    assert OnlineRankOrder.restore(store, DIM, settings(), paged).labels() == engine.labels()


def test_the_compactor_stores_snapshots_from_a_forked_child_while_the_writer_goes_on(
    store: RedisStore, redis_url: str
) -> None:
    engine, _ = _filled(store, 40)
    ended: list[
        int
    ] = []  # the writer's memory goes back to huge pages after each child (clustering/host/huge_pages.py)
    job = SnapshotJob(RedisAddress(redis_url), store.space, "", DIM)
    compactor = Compactor(job, every=16, covered=0, child_ended=lambda: ended.append(len(engine)))
    compactor.after(engine.index)
    assert compactor.running()
    _more(engine, 20)  # the child stores the index as it was at the fork, whatever the writer adds meanwhile
    deadline = time.monotonic() + 60
    while compactor.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [faces for faces, _ in compactor.finished] == [40]
    assert ended == [60]
    assert store.snapshot()[1] == 40
    assert OnlineRankOrder.restore(store, DIM, settings()).labels() == engine.labels()
    compactor.after(engine.index)  # 60 faces: the next is due at 56
    compactor.stop()  # a writer stepping down ends its child; that snapshot is simply not stored
    assert not compactor.running()
    assert ended == [60, 60]
    assert store.snapshot()[1] == 40


def test_a_failed_or_stuck_snapshot_child_is_logged_and_never_blocks_the_writer(
    store: RedisStore, redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine, _ = _filled(store, 40)
    job = SnapshotJob(RedisAddress(redis_url), store.space, "", DIM)

    def failing(*_: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("clustering.redis_state.compaction.store_snapshot", failing)  # the forked child inherits it
    compactor = Compactor(job, every=16, covered=0)
    compactor.after(engine.index)
    deadline = time.monotonic() + 30
    while compactor.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert compactor.finished == []
    assert "the index snapshot of 40 faces failed (exit 1" in caplog.text

    monkeypatch.setattr("clustering.redis_state.compaction.store_snapshot", lambda *_: time.sleep(60))
    monkeypatch.setattr("clustering.redis_state.compaction.CHILD_DEADLINE_S", 0.5)
    stuck = Compactor(job, every=16, covered=0)
    stuck.after(engine.index)
    time.sleep(1.0)
    assert not stuck.running()  # killed past its deadline, reaped
    assert "the index snapshot of 40 faces has run for" in caplog.text
    assert store.snapshot() == (None, 0)


def test_the_lease_is_kept_through_a_long_batch_and_left_to_lapse_by_a_stalled_writer(client: redis.Redis) -> None:
    space = f"lease-{uuid.uuid4().hex[:8]}"
    lease = WriterLease(client, space, ttl_s=0.6)
    assert lease.acquire()
    keeper = LeaseKeeper(lease, stall_s=2.5)
    keeper.start()
    try:
        for _ in range(4):  # a writer busy for 2 s, four times its lease, reporting progress in between
            time.sleep(0.5)
            keeper.progressed()
        assert lease.holder() == lease.token
        assert keeper.lost is None
        time.sleep(4.0)  # stalled: no progress past stall_s
        assert keeper.lost is not None
        assert "no progress" in keeper.lost
        assert lease.holder() is None  # lapsed, so a standby can take over
    finally:
        keeper.stop()


def test_a_batch_reaches_redis_in_one_round_trip_at_its_end_or_not_at_all(store: RedisStore) -> None:
    vectors, _ = identities(10, 3, 0.3, seed=2)
    engine = OnlineRankOrder(DIM, settings(), store)
    calls = store.client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    with store.batch():
        for i, vector in enumerate(vectors[:20]):
            engine.add(f"c:{i}:0", vector, offset=(0, i))
        assert store.count() == 0  # queued, not applied
        entry = OutboxEntry(0, 20, "c:19:0", 0, (), "c", 0.0, appearance="{}")
        assert store.apply_event("track#0", entry)
        assert not store.apply_event("track#0", entry)  # a repeat inside the batch
    assert store.client.info("commandstats")["cmdstat_evalsha"]["calls"] == calls + 1
    assert store.count() == 20
    assert store.offsets() == {0: 20}
    assert len(store.outbox()) == 21
    assert not store.apply_event("track#0", entry)  # a repeat of an applied event

    def failing_batch() -> None:
        with store.batch():
            engine.add("c:20:0", vectors[20], offset=(0, 21))
            raise RuntimeError("the worker failed mid-batch")

    with pytest.raises(RuntimeError):
        failing_batch()
    assert store.count() == 20  # nothing of the failed batch was applied
    assert OnlineRankOrder.restore(store, DIM, settings()).labels() == {
        k: v for k, v in engine.labels().items() if k != "c:20:0"
    }


def test_a_snapshot_without_vectors_gives_back_the_same_index(tmp_path: Path) -> None:
    vectors, _ = identities(30, 4, 0.3, seed=4)
    index = HnswIndex(DIM, settings().index)
    index.add_all(0, vectors, threads=1)
    index.save(tmp_path / "saved.bin")
    saved = (tmp_path / "saved.bin").read_bytes()
    graph = strip_vectors(saved, DIM)
    assert len(graph) < len(saved) / 3
    with (tmp_path / "rebuilt.bin").open("wb") as handle:
        write_with_vectors(graph, list(vectors), DIM, handle, chunk=7)  # several chunks
    rebuilt = HnswIndex(DIM, settings().index, snapshot=tmp_path / "rebuilt.bin")
    for query in vectors[::7]:
        labels, sims = index.query(query, 10)
        again, again_sims = rebuilt.query(query, 10)
        assert again.tolist() == labels.tolist()
        np.testing.assert_allclose(again_sims, sims, atol=1e-6)
    with pytest.raises(SnapshotFormatError):
        write_with_vectors(saved, list(vectors), DIM, io.BytesIO())  # not a stripped graph
    with pytest.raises(SnapshotFormatError):
        write_with_vectors(graph, list(vectors[:10]), DIM, io.BytesIO())  # fewer vectors than the graph names


def test_face_records_are_packed_and_those_of_earlier_releases_still_read(store: RedisStore) -> None:
    engine = OnlineRankOrder(DIM, settings(), store)
    vectors, _ = identities(2, 1, 0.0, seed=12)
    engine.add("cam:7:0", vectors[0], camera="cam", frame=7, timestamp=1.25, quality=0.875)
    engine.add("caméra:8:1", vectors[1], camera="caméra", frame=8, track="t-1", cooccurring=("t-2", "t-3"))
    meta_key = f"{{fs:{store.space}}}:meta"
    packed = store.client.hget(meta_key, "0")
    assert isinstance(packed, bytes)
    assert len(packed) < 70  # JSON took about 170 bytes
    assert not packed.startswith(b"{")
    first, second = store.metas([0, 1])
    assert first == FaceMeta("cam:7:0", "cam", "cam:7", 1.25, 0.875, None, (), first.stored_at)
    assert first.stored_at > 0
    assert second == FaceMeta("caméra:8:1", "caméra", "caméra:8", 0.0, 1.0, "t-1", ("t-2", "t-3"), second.stored_at)
    # A record written as JSON by an earlier release reads as before.
    store.client.hset(meta_key, "1", json.dumps(dataclasses.asdict(second)))
    assert store.load().metas == [first, second]
