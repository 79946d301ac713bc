"""The pictures of faces in the space's Redis state, as the console relies on them: kept for the best faces each
identity shows (its representatives) and for no other, so that Redis holds a bounded few per identity; a face
that stops being shown, after a better one, a merge or a forget, has its picture deleted in the same atomic step."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from clustering.corrections import ForgetFaces, MergeClusters
from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_keys import Key
from clustering.redis_state.redis_records import as_text
from clustering.redis_state.redis_store import RedisStore
from tests.correction_faces import DIM, look_alikes, person
from tests.synthetic_faces import settings


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    store = RedisStore(connect(redis_url), f"thumbs-{uuid.uuid4().hex[:12]}")
    yield store
    store.clear()


def _pictured(store: RedisStore) -> set[str]:
    return {as_text(key) for key in store.client.hkeys(store.keys.of(Key.THUMBNAILS))}


def _shown(engine: OnlineRankOrder, best: int = 3) -> set[str]:
    """The faces among the ``best`` representatives of some identity (the store keeps 3 pictures each)."""
    return {face for summary in engine.clusters().values() for _, face in summary.representatives[:best]}


def _picture_of(face_id: str) -> Callable[[], bytes]:
    return f"pic {face_id}".encode


def _add(engine: OnlineRankOrder, camera: str, vectors: list[np.ndarray], qualities: list[float]) -> list[str]:
    ids = []
    for frame, (vector, quality) in enumerate(zip(vectors, qualities, strict=True)):
        face_id = f"{camera}:{frame}:0"
        engine.add(face_id, vector, camera=camera, frame=frame, quality=quality, thumbnail=_picture_of(face_id))
        ids.append(face_id)
    return ids


def test_pictures_are_kept_for_the_faces_each_identity_shows_and_no_other(store: RedisStore) -> None:
    engine = OnlineRankOrder(DIM, settings(), store)
    rng = np.random.default_rng(3)
    alice, bob = look_alikes(0.0)
    # Quality rising then falling: early faces are shown, then pushed out by better ones.
    qualities = [0.5 + 0.04 * i for i in range(10)] + [0.3] * 4
    faces = _add(engine, "door", person(alice, 14, rng, noise=0.1), qualities)
    faces += _add(engine, "yard", person(bob, 3, rng, noise=0.1), [0.9, 0.8, 0.7])
    assert len(engine.clusters()) == 2
    assert _pictured(store) == _shown(engine)
    assert len(_pictured(store)) == 3 + 3  # the 3 best of each, of 17 faces
    assert store.reads.thumbnail("door:9:0") == b"pic door:9:0"
    assert store.reads.thumbnail("door:0:0") is None  # shown once, then pushed out by better faces: its picture went

    door, yard = sorted(engine.clusters(), key=lambda root: -engine.clusters()[root].size)
    engine.correct(MergeClusters("merge-1", (door, yard)))
    assert _pictured(store) == _shown(engine)
    assert len(_pictured(store)) == 3

    best = engine.clusters()[engine.cluster_of("door:9:0")].representatives[0][1]
    engine.correct(ForgetFaces("forget-1", (best,)))
    assert store.reads.thumbnail(best) is None
    assert _pictured(store) <= _shown(engine)

    root = engine.cluster_of("door:9:0")
    forgotten = {face for face, cluster in engine.labels().items() if cluster == root}
    engine.correct(ForgetFaces("forget-2", (), cluster=engine.cluster_of("door:9:0")))
    assert not _pictured(store) & forgotten
    # What the forget left apart is shown again; a face whose picture went at the merge stays without one (the
    # console shows a blank for it: pictures are only ever kept of shown faces, never brought back).
    assert _pictured(store) <= _shown(engine)


def test_a_face_given_no_picture_is_clustered_all_the_same(store: RedisStore) -> None:
    engine = OnlineRankOrder(DIM, settings(), store)
    rng = np.random.default_rng(4)
    centre, _ = look_alikes(0.0)
    for frame, vector in enumerate(person(centre, 4, rng, noise=0.1)):
        engine.add(f"cam:{frame}:0", vector, camera="cam", frame=frame, thumbnail=lambda: None)
    assert len(engine.clusters()) == 1
    assert _pictured(store) == set()
