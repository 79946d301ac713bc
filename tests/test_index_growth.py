"""The writer's index grows ahead of need at moments a resize is cheap."""

from __future__ import annotations

import time

import pytest

from clustering.index import HnswIndex
from clustering.redis_state.compaction import Compactor, SnapshotJob
from clustering.redis_state.redis_client import RedisAddress
from clustering.settings import IndexSettings
from tests.synthetic_faces import DIM, identities


def test_the_index_grows_ahead_of_need_between_snapshot_children_never_beside_one(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A resize remaps the memory a child shares page by page (about 20 times the cost): no batch should pay it.
    monkeypatch.setattr("clustering.redis_state.compaction.store_snapshot", lambda *_: time.sleep(60))
    vectors, _ = identities(7, 4, 0.3, seed=5)
    index = HnswIndex(DIM, IndexSettings(initial_capacity=16))
    index.add_all(0, vectors[:13], threads=1)
    compactor = Compactor(SnapshotJob(RedisAddress(redis_url), "growth", "", DIM), 8, 0, child_ended=lambda: None)
    compactor.after(index)  # 13 of 16 used, and a snapshot due: the growth first, alone
    assert (index.capacity, compactor.running()) == (32, False)
    compactor.after(index)
    assert compactor.running()
    index.add_all(13, vectors[13:25], threads=1)
    compactor.after(index)  # 25 of 32, but a child runs
    assert index.capacity == 32
    compactor.stop()
    compactor.after(index)
    assert index.capacity == 64
    assert len(index) == 25
