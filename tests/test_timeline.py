"""Each identity's timeline in the space's Redis state, as the API and the console answer "where and when was
this person seen" from it: a track's appearances filed under the identity of their best face, newest first, by
camera, paged; moved when identities merge (online or by a correction) or split, dropped with a forgotten face,
and bounded per identity."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from clustering.corrections import ForgetFaces, MergeClusters, SplitFaces
from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_records import OutboxEntry, Sighting
from clustering.redis_state.redis_store import RedisStore
from tests.correction_faces import DIM, look_alikes, person
from tests.synthetic_faces import settings


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    store = RedisStore(connect(redis_url), f"timeline-{uuid.uuid4().hex[:12]}", appearances_kept=4)
    yield store
    store.clear()


class _Site:
    """Tracks of people at cameras, each with one embedded face and one appearance."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.engine = OnlineRankOrder(DIM, settings(), store)
        self.frame = 0

    def track(self, name: str, camera: str, vector: np.ndarray, seen_at: float) -> str:
        self.frame += 1
        face = f"{camera}:{self.frame}:0"
        self.engine.add(face, vector, camera=camera, frame=self.frame, timestamp=seen_at, track=name)
        sighting = Sighting(name, 0, camera, seen_at - 2.0, seen_at, 10, True, face)
        entry = OutboxEntry(0, self.frame, face, self.engine.cluster_of(face), (), camera, seen_at, appearance="{}")
        assert self.store.apply_event(f"{name}#0", entry, sighting, f"picture of {face}".encode())
        return face

    def seen(self, face: str, camera: str | None = None) -> list[str]:
        total, found = self.store.reads.timeline(self.engine.cluster_of(face), camera, 0, 100)
        assert total == len(found)
        return [sighting.track for sighting in found]


def test_an_identity_s_appearances_are_listed_newest_first_by_camera_and_paged(store: RedisStore) -> None:
    site = _Site(store)
    rng = np.random.default_rng(1)
    ada, bob = look_alikes(0.0)
    faces = [site.track(f"t{i}", ("door", "hall")[i % 2], v, 100.0 + i) for i, v in enumerate(person(ada, 3, rng))]
    site.track("b0", "door", person(bob, 1, rng)[0], 200.0)
    assert site.seen(faces[0]) == ["t2", "t1", "t0"]
    assert site.seen(faces[0], "door") == ["t2", "t0"]
    total, page = store.reads.timeline(site.engine.cluster_of(faces[0]), None, 1, 1)
    assert (total, [s.track for s in page]) == (3, ["t1"])
    assert page[0] == Sighting("t1", 0, "hall", 99.0, 101.0, 10, True, faces[1])
    assert store.reads.thumbnail(faces[1]) == f"picture of {faces[1]}".encode()  # its best face's picture


def test_appearances_follow_merges_and_splits_and_go_with_forgotten_faces(store: RedisStore) -> None:
    site = _Site(store)
    rng = np.random.default_rng(2)
    ada, bob = look_alikes(0.0)
    a = [site.track(f"a{i}", "door", v, 10.0 + i) for i, v in enumerate(person(ada, 2, rng))]
    b = [site.track(f"b{i}", "hall", v, 20.0 + i) for i, v in enumerate(person(bob, 2, rng))]
    site.engine.correct(MergeClusters("merge-1", (site.engine.cluster_of(a[0]), site.engine.cluster_of(b[0]))))
    assert site.seen(a[0]) == ["b1", "b0", "a1", "a0"]
    site.engine.correct(SplitFaces("split-1", tuple(b)))
    assert site.seen(a[0]) == ["a1", "a0"]
    assert site.seen(b[0]) == ["b1", "b0"]
    site.engine.correct(ForgetFaces("forget-1", (b[1],)))
    assert site.seen(b[0]) == ["b0"]
    assert store.reads.thumbnail(b[1]) is None


def test_an_identity_that_absorbs_another_online_takes_its_appearances(store: RedisStore) -> None:
    site = _Site(store)
    rng = np.random.default_rng(3)
    ada, bob = look_alikes(0.0)
    first = site.track("a0", "door", person(ada, 1, rng)[0], 1.0)
    site.track("b0", "hall", person(bob, 1, rng)[0], 2.0)
    assert len(site.engine.clusters()) == 2
    # Track a0 goes on with a face that looks like bob's: the track's must-link joins the two identities.
    bridge = person(bob, 1, rng, noise=0.05)[0]
    site.engine.add("door:99:0", bridge, camera="door", frame=99, timestamp=3.0, track="a0")
    assert len(site.engine.clusters()) == 1
    assert site.seen(first) == ["b0", "a0"]


def test_an_identity_keeps_its_newest_appearances_only(store: RedisStore) -> None:
    site = _Site(store)
    rng = np.random.default_rng(4)
    ada, _ = look_alikes(0.0)
    faces = [site.track(f"t{i}", "door", v, float(i)) for i, v in enumerate(person(ada, 6, rng))]
    assert site.seen(faces[0]) == ["t5", "t4", "t3", "t2"]  # kept: 4
    assert store.reads.thumbnail(faces[0]) is None  # the picture of an appearance let go goes with it
