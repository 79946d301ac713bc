"""Corrections a user makes, over both stores: look-alikes split stay split, a rejected face and its near
copies never come back, merges hold, names survive merges and restarts, and bad commands change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from clustering.corrections import (
    CorrectionError,
    CorrectionReason,
    ForgetFaces,
    LabelCluster,
    MergeClusters,
    RejectFace,
    SplitFaces,
)
from clustering.engine import OnlineRankOrder
from clustering.events import Conflict, Forgotten, Labelled, Merged, Split
from clustering.redis_state.compaction import store_snapshot
from clustering.redis_state.redis_store import RedisStore
from clustering.store import EMBEDDING_DTYPE
from tests.conftest import StoreFactory
from tests.correction_faces import DIM, add_all, look_alikes, person
from tests.streams import redis_traces
from tests.synthetic_faces import settings


@pytest.fixture
def siblings(make_store: StoreFactory) -> tuple[OnlineRankOrder, list[str], list[str]]:
    """An engine in which two look-alike people's faces ended up in one cluster."""
    rng = np.random.default_rng(1)
    a, b = look_alikes(0.8)
    engine = OnlineRankOrder(DIM, settings(), make_store())
    alice = add_all(engine, "alice", person(a, 6, rng))
    bob = add_all(engine, "bob", person(b, 6, rng))
    assert len({engine.cluster_of(f) for f in alice + bob}) == 1, "the look-alikes should start merged"
    return engine, alice, bob


def test_look_alikes_split_stay_split_and_later_faces_go_to_the_right_side(
    siblings: tuple[OnlineRankOrder, list[str], list[str]],
) -> None:
    engine, alice, bob = siblings
    cluster = engine.cluster_of(alice[0])
    outcome = engine.correct(SplitFaces("split-1", tuple(bob)))
    assert isinstance(outcome, Split)
    assert outcome.cluster == cluster
    assert {engine.cluster_of(f) for f in alice} == {cluster}
    (bob_cluster,) = {engine.cluster_of(f) for f in bob}
    assert bob_cluster != cluster
    assert sorted(len(faces) for _, faces in outcome.parts) == [6, 6]

    rng = np.random.default_rng(2)
    a, b = look_alikes(0.8)
    later_alice = add_all(engine, "alice", person(a, 5, rng), start=100)
    later_bob = add_all(engine, "bob", person(b, 5, rng), start=100)
    assert {engine.cluster_of(f) for f in later_alice} == {cluster}
    assert {engine.cluster_of(f) for f in later_bob} == {bob_cluster}
    assert engine.correct(MergeClusters("merge-back", (cluster, bob_cluster))) == Conflict(
        "merge-back", "the clusters hold faces known to be different people (an earlier split or reject, or one frame)"
    )
    assert engine.cluster_of(alice[0]) != engine.cluster_of(bob[0])


def test_a_rejected_face_and_its_near_copies_never_come_back(
    siblings: tuple[OnlineRankOrder, list[str], list[str]],
) -> None:
    engine, alice, bob = siblings
    cluster = engine.cluster_of(alice[0])
    outcome = engine.correct(RejectFace("reject-1", bob[0], cluster))
    assert isinstance(outcome, Split)
    rejected = engine.cluster_of(bob[0])
    assert rejected != cluster
    assert engine.cluster_of(alice[1]) == cluster
    # Near copies of the rejected photo stay out of the cluster it was rejected from.
    state = engine.store.load()
    rejected_vector = state.embeddings[[meta.face_id for meta in state.metas].index(bob[0])]
    rng = np.random.default_rng(3)
    for i in range(3):
        copy = rejected_vector + rng.normal(scale=0.01 / np.sqrt(DIM), size=DIM).astype(np.float32)
        engine.add(f"copy:{i}:0", copy / np.linalg.norm(copy), camera="copy", frame=i)
        assert engine.cluster_of(f"copy:{i}:0") == rejected


def test_a_merge_holds_as_faces_come(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(4)
    engine = OnlineRankOrder(DIM, settings(), make_store())
    # One person in two very different conditions (similarity 0.1): two clusters until a user merges them.
    day, night = look_alikes(0.1, seed=5)
    day_faces = add_all(engine, "day", person(day, 4, rng))
    night_faces = add_all(engine, "night", person(night, 4, rng))
    first, second = engine.cluster_of(day_faces[0]), engine.cluster_of(night_faces[0])
    assert first != second
    outcome = engine.correct(MergeClusters("merge-1", (second, first)))
    assert outcome == Merged("merge-1", min(first, second), (max(first, second),))
    add_all(engine, "day", person(day, 3, rng), start=50)
    add_all(engine, "night", person(night, 3, rng), start=50)
    assert len(set(engine.labels().values())) == 1
    assert engine.correct(MergeClusters("merge-1", (first, second))) is None  # applied before: nothing again


def test_names_survive_merges_and_two_names_never_join(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(6)
    engine = OnlineRankOrder(DIM, settings(), make_store())
    a, b = look_alikes(0.1, seed=7)
    first = engine.cluster_of(add_all(engine, "a", person(a, 3, rng))[0])
    second = engine.cluster_of(add_all(engine, "b", person(b, 3, rng))[0])
    assert engine.correct(LabelCluster("name-a", first, "Alice")) == Labelled("name-a", first, "Alice")
    assert engine.correct(LabelCluster("name-b", second, "Bob")) == Labelled("name-b", second, "Bob")
    conflict = engine.correct(MergeClusters("merge-ab", (first, second)))
    assert isinstance(conflict, Conflict)
    assert "different names" in conflict.reason
    # A face as similar to both as to either (a bridge) joins one of them, never both.
    bridge = (a + b) / np.linalg.norm(a + b)
    engine.add("bridge:0:0", bridge.astype(np.float32), camera="bridge", frame=0)
    assert engine.cluster_of("a:0:0") != engine.cluster_of("b:0:0")
    assert {s.name for s in engine.clusters().values()} >= {"Alice", "Bob"}
    engine.correct(LabelCluster("clear-b", second, None))
    assert engine.clusters()[second].name is None
    merged = engine.correct(MergeClusters("merge-ab-2", (first, second)))
    assert isinstance(merged, Merged)
    assert engine.clusters()[merged.survivor].name == "Alice"


def test_corrections_and_their_constraints_survive_a_restart(
    siblings: tuple[OnlineRankOrder, list[str], list[str]],
) -> None:
    engine, alice, bob = siblings
    cluster = engine.cluster_of(alice[0])
    engine.correct(SplitFaces("split-1", tuple(bob)))
    engine.correct(LabelCluster("name-1", cluster, "Alice"))
    restored = OnlineRankOrder.restore(engine.store, DIM, settings())
    assert restored.labels() == engine.labels()
    assert restored.clusters() == engine.clusters()
    assert restored.correct(SplitFaces("split-1", tuple(bob))) is None  # the command id is remembered
    later = add_all(restored, "bob", person(look_alikes(0.8)[1], 4, np.random.default_rng(8)), start=200)
    assert {restored.cluster_of(f) for f in later} == {restored.cluster_of(bob[0])}
    assert restored.cluster_of(bob[0]) != restored.cluster_of(alice[0])
    assert restored.clusters()[cluster].name == "Alice"


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (SplitFaces("bad", ("nobody:0:0",)), CorrectionReason.UNKNOWN_FACE),
        (MergeClusters("bad", (0, 10_000)), CorrectionReason.UNKNOWN_CLUSTER),
        (LabelCluster("bad", -1, "x"), CorrectionReason.UNKNOWN_CLUSTER),
        (LabelCluster("bad", 0, "x" * 10_000), CorrectionReason.BAD_NAME),
        (LabelCluster("bad", 0, "Alice\n[ERROR] forged"), CorrectionReason.BAD_NAME),
        (LabelCluster("bad", 0, "   "), CorrectionReason.BAD_NAME),
        (MergeClusters("bad", (0, 0)), CorrectionReason.NOTHING_TO_MERGE),
        (RejectFace("bad", "alice:0:0", 10_000), CorrectionReason.UNKNOWN_CLUSTER),
    ],
)
def test_a_bad_command_changes_nothing(
    siblings: tuple[OnlineRankOrder, list[str], list[str]], command: object, reason: CorrectionReason
) -> None:
    engine, _, _ = siblings
    before = (engine.labels(), engine.clusters(), engine.store.load().commands)
    with pytest.raises(CorrectionError) as raised:
        engine.correct(command)  # type: ignore[arg-type]
    assert raised.value.reason == reason
    assert (engine.labels(), engine.clusters(), engine.store.load().commands) == before


def test_a_split_of_every_face_or_across_clusters_is_refused(
    siblings: tuple[OnlineRankOrder, list[str], list[str]],
) -> None:
    engine, alice, bob = siblings
    with pytest.raises(CorrectionError) as raised:
        engine.correct(SplitFaces("all", tuple(alice + bob)))
    assert raised.value.reason == CorrectionReason.SPLIT_OF_ALL
    engine.correct(SplitFaces("split-1", tuple(bob)))
    with pytest.raises(CorrectionError) as raised:
        engine.correct(SplitFaces("across", (alice[0], bob[0])))
    assert raised.value.reason == CorrectionReason.FACES_IN_SEVERAL_CLUSTERS
    with pytest.raises(CorrectionError) as raised:
        engine.correct(RejectFace("elsewhere", bob[0], engine.cluster_of(alice[0])))
    assert raised.value.reason == CorrectionReason.NOT_IN_CLUSTER


def _traces(store: object) -> bytes:
    return redis_traces(store.client, store.space) if isinstance(store, RedisStore) else b""


def test_forget_erases_faces_from_the_index_the_clusters_and_the_store(
    siblings: tuple[OnlineRankOrder, list[str], list[str]],
) -> None:
    engine, alice, bob = siblings
    state = engine.store.load()
    ids = [meta.face_id for meta in state.metas]
    vectors = {face: state.embeddings[ids.index(face)] for face in bob}
    packed = {face: vectors[face].astype(EMBEDDING_DTYPE).tobytes() for face in bob}
    cluster = engine.cluster_of(alice[0])
    assert _traces(engine.store).count(bob[0].encode()) >= 1 or not isinstance(engine.store, RedisStore)

    outcome = engine.correct(ForgetFaces("forget-bob", tuple(bob)))
    assert isinstance(outcome, Forgotten)
    assert set(outcome.faces) == set(bob)
    assert not set(bob) & set(engine.labels())
    assert sum(len(faces) for _, faces in outcome.parts) == len(alice)
    assert engine.cluster_of(alice[0]) == cluster
    assert engine.clusters()[cluster].size == len(alice)
    # A search with the erased face's own embedding finds no face as similar as itself.
    (best, similarity), *_ = engine.nearest_clusters(vectors[bob[0]], 1)
    assert similarity < 0.99
    assert best.id == cluster  # the nearest is now his sister's
    blob = _traces(engine.store)
    for face in bob:
        assert face.encode() not in blob
        assert packed[face] not in blob
    # Read again (a replay), a forgotten face stays forgotten; a restart keeps all of it.
    engine.add(bob[0], vectors[bob[0]], camera="bob", frame=0)
    assert bob[0] not in engine.labels()
    restored = OnlineRankOrder.restore(engine.store, DIM, settings())
    assert restored.labels() == engine.labels()
    assert restored.clusters() == engine.clusters()
    assert restored.nearest_clusters(vectors[bob[0]], 1)[0][1] < 0.99
    restored.add(bob[1], vectors[bob[1]], camera="bob", frame=1)
    assert bob[1] not in restored.labels()
    if isinstance(engine.store, RedisStore):
        # The next index snapshot holds the erased faces as deleted nodes without vectors, and restores alike.
        store_snapshot(engine.index, engine.store, DIM)
        for face in bob:
            assert packed[face] not in _traces(engine.store)
        from_snapshot = OnlineRankOrder.restore(engine.store, DIM, settings())
        assert from_snapshot.labels() == engine.labels()
        assert from_snapshot.nearest_clusters(vectors[bob[0]], 1)[0][1] < 0.99


def test_forget_by_cluster_camera_and_time(make_store: StoreFactory) -> None:
    rng = np.random.default_rng(9)
    engine = OnlineRankOrder(DIM, settings(), make_store())
    a, b = look_alikes(0.1, seed=10)
    first = add_all(engine, "door", person(a, 4, rng))
    second = add_all(engine, "hall", person(b, 4, rng))
    cluster = engine.cluster_of(first[0])
    outcome = engine.correct(ForgetFaces("by-cluster", cluster=cluster))
    assert isinstance(outcome, Forgotten)
    assert outcome.removed == (cluster,)
    assert set(engine.labels()) == set(second)
    engine.correct(ForgetFaces("by-camera", camera="hall"))
    assert engine.labels() == {}
    late = add_all(engine, "gate", person(a, 3, rng), start=10)
    engine.correct(ForgetFaces("by-time", before=11.0))  # the timestamps are 0: all before
    assert engine.labels() == {}
    assert len(late) == 3
    with pytest.raises(CorrectionError) as raised:
        engine.correct(ForgetFaces("two", faces=("x:0:0",), camera="door"))
    assert raised.value.reason == CorrectionReason.BAD_SELECTION
    with pytest.raises(CorrectionError) as raised:
        engine.correct(ForgetFaces("nobody", faces=("x:0:0",)))
    assert raised.value.reason == CorrectionReason.UNKNOWN_FACE
