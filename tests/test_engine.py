"""The online rank-order engine over both stores: cannot-links, replays, restarts, merges."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from clustering.engine import OnlineRankOrder
from clustering.rank_order import batch_rank_order
from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_store import RedisStore
from clustering.scores import score_clustering
from clustering.settings import RankOrderSettings
from clustering.store import StoreError
from tests.conftest import StoreFactory
from tests.local_services import free_port
from tests.synthetic_faces import DIM, identities, settings


def test_faces_of_one_frame_never_share_a_cluster(make_store: StoreFactory) -> None:
    engine = OnlineRankOrder(DIM, settings(), make_store())
    face = identities(1, 1, 0.0)[0][0]
    # Three near-identical faces, two of them in frame 7 of camera a: only one of those two may join.
    first = engine.add("a:7:0", face, frame=7)
    second = engine.add("a:7:1", face, frame=7)
    third = engine.add("b:1:0", face, frame=1)
    assert first.cluster_id != second.cluster_id
    assert third.cluster_id in (first.cluster_id, second.cluster_id)
    assert engine.cluster_of("a:7:0") != engine.cluster_of("a:7:1")
    assert engine.refused_links >= 1


def test_a_bridge_cannot_merge_two_faces_of_one_frame(make_store: StoreFactory) -> None:
    engine = OnlineRankOrder(DIM, settings(), make_store())
    a, b = np.zeros(DIM, np.float32), np.zeros(DIM, np.float32)
    a[0], b[1] = 1.0, 1.0
    engine.add("cam:1:0", a, frame=1)
    engine.add("cam:1:1", b, frame=1)
    bridge = (a + b) / np.linalg.norm(a + b)  # 0.71 similar to both: linked to each directly
    engine.add("cam:2:0", bridge.astype(np.float32), frame=2)
    assert engine.cluster_of("cam:1:0") != engine.cluster_of("cam:1:1")


def test_a_replayed_face_changes_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    engine = OnlineRankOrder(DIM, settings(), store)
    vectors, _ = identities(5, 4, 0.05)
    for i, v in enumerate(vectors):
        engine.add(f"c:{i}:0", v, offset=(0, i))
    before = store.load()
    replay = engine.add("c:3:0", vectors[3], offset=(0, 3))
    assert replay.cluster_id == engine.cluster_of("c:3:0")
    assert replay.merges == ()
    after = store.load()
    assert len(after.metas) == len(before.metas) == 20
    assert after.clusters == before.clusters
    assert after.offsets == {0: 19}
    # The store itself refuses a second application of the same face, whoever sends it.
    restored = OnlineRankOrder.restore(store, DIM, settings())
    assert restored.labels() == engine.labels()


def test_restart_from_the_store_gives_the_clusters_of_an_uninterrupted_run(make_store: StoreFactory) -> None:
    vectors, _ = identities(40, 6, 0.35, seed=3)
    half = len(vectors) // 2
    uninterrupted = OnlineRankOrder(DIM, settings(), make_store())
    for i, v in enumerate(vectors):
        uninterrupted.add(f"c:{i}:0", v)

    store = make_store()
    first = OnlineRankOrder(DIM, settings(), store)
    for i, v in enumerate(vectors[:half]):
        first.add(f"c:{i}:0", v)
    del first  # the process state is gone; only the store remains
    resumed = OnlineRankOrder.restore(store, DIM, settings())
    for i, v in enumerate(vectors[half:], start=half):
        resumed.add(f"c:{i}:0", v)
    assert resumed.labels() == uninterrupted.labels()
    assert resumed.clusters() == uninterrupted.clusters()


def test_merges_keep_the_oldest_cluster(make_store: StoreFactory) -> None:
    engine = OnlineRankOrder(DIM, settings(), make_store())
    a, b = np.zeros(DIM, np.float32), np.zeros(DIM, np.float32)
    a[0], b[1] = 1.0, 1.0
    assert engine.add("a", a).cluster_id == 0
    assert engine.add("b", b).cluster_id == 1
    bridge = engine.add("c", ((a + b) / np.linalg.norm(a + b)).astype(np.float32))
    assert bridge.cluster_id == 0
    assert [(m.survivor, m.absorbed) for m in bridge.merges] == [(0, (1,))]
    summary = engine.clusters()[0]
    assert summary.size == 3
    assert set(engine.clusters()) == {0}


def test_online_matches_the_batch_yardstick_on_identity_structure() -> None:
    vectors, truth = identities(60, 8, 0.3, seed=1)
    engine = OnlineRankOrder(DIM, settings())
    for i, v in enumerate(vectors):
        engine.add(str(i), v)
    online = [engine.cluster_of(str(i)) for i in range(len(vectors))]
    batch = batch_rank_order(vectors, RankOrderSettings()).tolist()
    online_f = score_clustering(truth, online).bcubed_f
    assert online_f > 0.95
    assert abs(online_f - score_clustering(truth, batch).bcubed_f) < 0.01


def test_summaries_track_cameras_times_and_best_faces() -> None:
    engine = OnlineRankOrder(DIM, settings())
    vectors, _ = identities(1, 3, 0.01)
    for i, (camera, quality) in enumerate([("lobby", 0.5), ("door", 0.9), ("lobby", 0.7)]):
        engine.add(f"{camera}:{i}:0", vectors[i], camera=camera, timestamp=100.0 + i, quality=quality)
    (summary,) = engine.clusters().values()
    assert summary.size == 3
    assert (summary.first_seen, summary.last_seen) == (100.0, 102.0)
    assert summary.cameras == ("door", "lobby")
    assert [face for _, face in summary.representatives] == ["door:1:0", "lobby:2:0", "lobby:0:0"]


def test_a_second_writer_on_the_same_space_is_refused(redis_url: str) -> None:
    client = connect(redis_url)
    space = f"test-{uuid.uuid4().hex[:12]}"
    vectors, _ = identities(2, 2, 0.05)
    one = OnlineRankOrder(DIM, settings(), RedisStore(client, space))
    other = OnlineRankOrder(DIM, settings(), RedisStore(client, space))
    one.add("x", vectors[0])
    with pytest.raises(StoreError, match="another writer"):
        other.add("y", vectors[1])
    with pytest.raises(StoreError, match="restore the engine"):
        other.add("z", vectors[2])
    RedisStore(client, space).clear()


def test_an_unreachable_redis_fails_at_start_up() -> None:
    with pytest.raises(StoreError, match="unreachable"):
        connect(f"redis://127.0.0.1:{free_port()}/0", retries=0, timeout_s=0.5)


def test_keys_of_a_space_share_one_hash_tag(redis_url: str) -> None:
    client = connect(redis_url)
    store = RedisStore(client, "tagcheck")
    engine = OnlineRankOrder(DIM, settings(), store)
    engine.add("x", identities(1, 1, 0.0)[0][0])
    keys = [k.decode() for k in client.scan_iter("*tagcheck*")]
    assert keys
    assert all(k.startswith("{fs:tagcheck}:") for k in keys)
    store.clear()
    assert not list(client.scan_iter("*tagcheck*"))
