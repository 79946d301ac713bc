"""Faces enter the HNSW index a block at a time: every face still finds its nearest earlier faces, found as soon as
it is added, whatever way the stream is cut into batches, and across restarts."""

from __future__ import annotations

import numpy as np

from clustering.engine import OnlineRankOrder
from clustering.index import HnswIndex
from clustering.neighbour_search import NeighbourSearch
from clustering.settings import ClusteringSettings, IndexSettings, RankOrderSettings
from tests.conftest import StoreFactory
from tests.synthetic_faces import DIM, identities


def _one_thread(block: int) -> ClusteringSettings:
    return ClusteringSettings(
        index=IndexSettings(insert_block=block, insert_threads=1), rank_order=RankOrderSettings(snapshot_every=0)
    )


def _exact(vectors: np.ndarray, i: int, k: int, gone: set[int]) -> list[int]:
    earlier = [j for j in range(i) if j not in gone]
    sims = vectors[earlier] @ vectors[i]
    return [earlier[j] for j in np.argsort(-sims, kind="stable")[:k]]


def _filled(vectors: np.ndarray) -> NeighbourSearch:
    """A search over ``vectors`` in blocks of 8, on one thread, each added as the engine adds a face."""
    search = NeighbourSearch(HnswIndex(DIM, IndexSettings()), block=8, threads=1)
    for i, vector in enumerate(vectors):
        search.nearest(f"f{i}", vector, 5)
        search.add(i, vector)
    return search


def test_each_face_finds_its_exact_nearest_earlier_faces_in_the_index_and_in_the_block() -> None:
    vectors, _ = identities(25, 4, 0.4, seed=3)
    search = NeighbourSearch(HnswIndex(DIM, IndexSettings()), block=16, threads=2)
    for i, vector in enumerate(vectors):
        if i % 10 == 0:
            search.expect({f"f{j}": vectors[j] for j in range(i, min(i + 10, len(vectors)))})
        labels, sims = search.nearest(f"f{i}", vector, 10)
        assert labels == _exact(vectors, i, 10, set())  # small enough for HNSW to be exact
        assert sims == sorted(sims, reverse=True)
        search.add(i, vector)
    assert len(search.index) == 96
    assert len(search) == 100


def test_forgotten_faces_are_never_found_whether_indexed_or_pending() -> None:
    vectors, _ = identities(10, 3, 0.4, seed=4)
    search = _filled(vectors[:20])
    search.forget([3, 18])  # one in the index, one in the block in progress
    for i in range(20, 30):
        labels, _ = search.nearest(f"f{i}", vectors[i], 10)
        assert labels == _exact(vectors, i, 10, {3, 18})
        search.add(i, vectors[i])  # the block holding 18 goes into the index at 24
    labels, _ = search.search(vectors[18], 30)
    assert 3 not in labels
    assert 18 not in labels
    assert len(labels) == 28


def test_a_face_forgotten_in_the_middle_of_a_batch_is_not_found_by_the_rest_of_it() -> None:
    vectors, _ = identities(10, 3, 0.4, seed=8)
    search = _filled(vectors[:16])
    copies = vectors[3] + 0.01 * vectors[16:20]  # near copies of face 3, which is in the index
    search.expect({f"f{16 + j}": copy for j, copy in enumerate(copies)})
    assert search.nearest("f16", copies[0], 5)[0][0] == 3  # the rest of the batch was queried with it
    search.add(16, copies[0])
    search.forget([3])
    for j, copy in enumerate(copies[1:], start=17):
        labels, _ = search.nearest(f"f{j}", copy, 5)
        assert 3 not in labels
        search.add(j, copy)


def test_a_face_is_searchable_as_soon_as_it_is_added(make_store: StoreFactory) -> None:
    vectors, _ = identities(3, 1, 0.0, seed=5)
    engine = OnlineRankOrder(DIM, ClusteringSettings(), make_store())  # default block: all three pending
    for i, vector in enumerate(vectors):
        engine.add(f"c:{i}:0", vector)
    for i, vector in enumerate(vectors):
        (best, similarity), *_ = engine.nearest_clusters(vector, 1)
        assert best.id == engine.cluster_of(f"c:{i}:0")
        assert similarity > 0.99


def test_the_clusters_do_not_depend_on_how_the_stream_is_cut_into_batches(make_store: StoreFactory) -> None:
    vectors, _ = identities(40, 5, 0.45, seed=6)
    outcomes = []
    for batch in (1, 7, 50, None):  # None: faces added with no batch announced
        engine = OnlineRankOrder(DIM, _one_thread(16), make_store())
        for first in range(0, len(vectors), batch or len(vectors)):
            last = min(first + (batch or len(vectors)), len(vectors))
            if batch:
                engine.expect({f"c:{i}:0": vectors[i] for i in range(first, last)})
            for i in range(first, last):
                engine.add(f"c:{i}:0", vectors[i])
        outcomes.append((engine.labels(), engine.store.load().neighbours))
    assert all(outcome == outcomes[0] for outcome in outcomes[1:])


def test_a_restart_in_the_middle_of_a_block_goes_on_as_if_uninterrupted(make_store: StoreFactory) -> None:
    vectors, _ = identities(30, 4, 0.45, seed=7)
    running = OnlineRankOrder(DIM, _one_thread(16), make_store())
    for i in range(53):  # three blocks in the index, five faces pending
        running.add(f"c:{i}:0", vectors[i])
    restarted = OnlineRankOrder.restore(running.store, DIM, _one_thread(16))
    assert len(restarted.index) == 48
    store = make_store()
    uninterrupted = OnlineRankOrder(DIM, _one_thread(16), store)
    for i in range(53):
        uninterrupted.add(f"c:{i}:0", vectors[i])
    for i in range(53, len(vectors)):
        restarted.add(f"c:{i}:0", vectors[i])
        uninterrupted.add(f"c:{i}:0", vectors[i])
    assert restarted.labels() == uninterrupted.labels()
    assert restarted.store.load().neighbours == store.load().neighbours
