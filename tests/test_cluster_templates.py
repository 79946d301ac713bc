"""Pieces of one person joined by their templates: what the face-to-face rules leave apart, the mean of each
piece's best faces brings together, and every constraint and correction still wins."""

from __future__ import annotations

import numpy as np
import pytest

from clustering.correction_state import SplitFaces
from clustering.engine import OnlineRankOrder
from clustering.joins import template_due
from clustering.settings import ClusteringSettings, IndexSettings, RankOrderSettings
from tests.conftest import StoreFactory

DIM = 128
#: Cosine between any two faces of one synthetic person: under the gate (0.40) and the direct link (0.45).
SHARED = 0.30


def people(count: int, faces: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` people, each ``faces`` unit faces exactly ``SHARED`` similar to one another and orthogonal
    to everyone else's: every face-to-face rule keeps them apart, a template of three or more does not
    (the cosine of two such templates of n faces is SHARED / (SHARED + (1 - SHARED) / n): 0.56 for n = 3)."""
    basis, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(DIM, count * (faces + 1))))
    result = []
    for person in range(count):
        identity = basis[:, person * (faces + 1)]
        noise = basis[:, person * (faces + 1) + 1 : (person + 1) * (faces + 1)].T
        result.append((np.sqrt(SHARED) * identity + np.sqrt(1 - SHARED) * noise).astype(np.float32))
    return result


def settings(template_faces: int = 3) -> ClusteringSettings:
    return ClusteringSettings(
        index=IndexSettings(insert_block=4), rank_order=RankOrderSettings(template_faces=template_faces)
    )


def add_track(engine: OnlineRankOrder, track: str, faces: np.ndarray, first_frame: int, **extra: object) -> None:
    for i, face in enumerate(faces):
        frame = first_frame + i
        engine.add(f"cam:{frame}:{track}", face, camera="cam", frame=frame, track=track, **extra)  # type: ignore[arg-type]


def test_two_tracks_of_one_person_join_by_template_when_no_two_faces_would(make_store: StoreFactory) -> None:
    (person,) = people(1, 8)
    for template_faces, clusters in ((0, 2), (3, 1)):
        engine = OnlineRankOrder(DIM, settings(template_faces), make_store())
        add_track(engine, "t1", person[:4], first_frame=0)
        add_track(engine, "t2", person[4:], first_frame=100)
        assert engine.cluster_count == clusters, f"template_faces={template_faces}"
    assert engine.cluster_of("cam:0:t1") == 0  # the older piece keeps its id


def test_strangers_pieces_stay_apart(make_store: StoreFactory) -> None:
    first, second = people(2, 6, seed=1)
    engine = OnlineRankOrder(DIM, settings(), make_store())
    add_track(engine, "t1", first[:3], first_frame=0)
    add_track(engine, "t2", second[:3], first_frame=10)
    add_track(engine, "t3", first[3:], first_frame=20)
    add_track(engine, "t4", second[3:], first_frame=30)
    labels = engine.labels()
    assert engine.cluster_count == 2
    assert labels["cam:0:t1"] == labels["cam:20:t3"] != labels["cam:10:t2"] == labels["cam:30:t4"]


def test_tracks_seen_together_are_never_joined_by_template(make_store: StoreFactory) -> None:
    (person,) = people(1, 8, seed=2)
    engine = OnlineRankOrder(DIM, settings(), make_store())
    add_track(engine, "t1", person[:4], first_frame=0, cooccurring=("t2",))
    add_track(engine, "t2", person[4:], first_frame=100, cooccurring=("t1",))
    assert engine.cluster_count == 2
    assert engine.refused_links >= 1


def test_a_split_between_the_pieces_stays_obeyed_as_they_grow(make_store: StoreFactory) -> None:
    (person,) = people(1, 16, seed=3)
    engine = OnlineRankOrder(DIM, settings(), make_store())
    add_track(engine, "t1", person[:4], first_frame=0)
    add_track(engine, "t2", person[4:8], first_frame=100)
    assert engine.cluster_count == 1
    engine.correct(SplitFaces("split-1", tuple(f"cam:{frame}:t2" for frame in range(100, 104))))
    assert engine.cluster_count == 2
    add_track(engine, "t2", person[8:12], first_frame=104)  # t2 doubles: due a template comparison again
    add_track(engine, "t1", person[12:], first_frame=4)
    assert engine.cluster_count == 2
    assert engine.cluster_of("cam:107:t2") != engine.cluster_of("cam:7:t1")


def test_a_restart_joins_pieces_as_an_uninterrupted_run_does(make_store: StoreFactory) -> None:
    first, second = people(2, 8, seed=4)
    tracks = [("t1", first[:4], 0), ("t2", second[:4], 10), ("t3", first[4:], 20), ("t4", second[4:], 30)]
    uninterrupted = OnlineRankOrder(DIM, settings(), make_store())
    for track, faces, frame in tracks:
        add_track(uninterrupted, track, faces, frame)

    store = make_store()
    engine = OnlineRankOrder(DIM, settings(), store)
    for track, faces, frame in tracks[:2]:
        add_track(engine, track, faces, frame)
    add_track(engine, "t3", first[4:5], 20)
    del engine
    resumed = OnlineRankOrder.restore(store, DIM, settings())
    add_track(resumed, "t3", first[5:], 21)
    add_track(resumed, "t4", second[4:], 30)
    assert resumed.cluster_count == 2
    assert resumed.labels() == uninterrupted.labels()
    assert resumed.clusters() == uninterrupted.clusters()


@pytest.mark.parametrize(
    ("before", "after", "due"),
    [
        (1, 2, False),
        (2, 3, True),
        (3, 4, True),
        (4, 5, False),
        (5, 8, True),
        (7, 8, True),
        (8, 9, False),
        (2, 40, True),
    ],
)
def test_a_cluster_is_compared_on_reaching_the_size_then_each_time_it_doubles(
    before: int, after: int, due: bool
) -> None:
    assert template_due(before, after, 3) is due
    assert not template_due(before, after, 0)
