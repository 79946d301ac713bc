"""The clustering state on a real three-master Redis Cluster: a space per slot, spaces over the masters, and a
master restarted mid-stream loses nothing it acknowledged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from clustering.engine import OnlineRankOrder
from clustering.redis_state.compaction import store_snapshot
from clustering.redis_state.lease import WriterLease
from clustering.redis_state.redis_client import RedisAddress, connect
from clustering.redis_state.redis_store import RedisStore
from tests.services import RedisClusterServers, redis_cluster
from tests.synthetic_faces import DIM, identities, settings

SPACES = [f"site-{n}" for n in range(12)]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    with redis_cluster(Path(tmp_path_factory.mktemp("redis-cluster"))) as servers:
        yield servers


def _feed(engines: dict[str, OnlineRankOrder], start: int, stop: int) -> None:
    """Faces start..stop-1 of every space, a batch (one round trip) per space."""
    for n, (space, engine) in enumerate(engines.items()):
        vectors, _ = identities(20, 4, 0.3, seed=n)
        store = engine.store
        assert isinstance(store, RedisStore)
        with store.batch():
            for i in range(start, stop):
                engine.add(f"{space}:{i}:0", vectors[i], offset=(0, i))


def test_spaces_live_in_one_slot_each_spread_over_the_masters_and_survive_a_master_restart(
    servers: RedisClusterServers,
) -> None:
    client = connect(RedisAddress(servers.url, cluster=True))
    assert isinstance(client, RedisCluster)
    engines: dict[str, OnlineRankOrder] = {}
    for space in SPACES:
        lease = WriterLease(client, space, ttl_s=60)
        assert lease.acquire()
        engines[space] = OnlineRankOrder(DIM, settings(), RedisStore(client, space, lease.token))
    _feed(engines, 0, 30)
    for engine in engines.values():
        store = engine.store
        assert isinstance(store, RedisStore)
        store_snapshot(engine.index, store, DIM)
    _feed(engines, 30, 40)

    # Each space's keys (state, outbox, lease, snapshot parts) hash to one slot; the spaces use every master.
    masters: dict[str, str] = {}
    for space in SPACES:
        keys = [k.decode() for k in client.scan_iter(match=f"{{fs:{space}}}:*", target_nodes=RedisCluster.ALL_NODES)]
        assert len(keys) >= 10
        assert len({client.keyslot(key) for key in keys}) == 1  # type: ignore[no-untyped-call]
        node = client.get_node_from_key(keys[0])  # type: ignore[no-untyped-call]
        assert node is not None
        masters[space] = node.name
    assert len(set(masters.values())) == 3

    # A master restarted between batches (AOF synced on every write): what it acknowledged is there after.
    restarted = servers.nodes[1]
    on_it = [space for space, name in masters.items() if name.endswith(f":{restarted.port}")]
    assert on_it
    servers.restart(restarted)
    client = connect(RedisAddress(servers.url, cluster=True))
    for space in SPACES:
        old = engines[space]
        lease = WriterLease(client, space, ttl_s=60)
        lease.token = old.store.writer_token  # type: ignore[attr-defined]
        assert lease.acquire()  # still this writer's
        store = RedisStore(client, space, lease.token)
        restored = OnlineRankOrder.restore(store, DIM, settings())
        assert restored.labels() == old.labels()
        assert store.count() == 40
        assert store.offsets() == {0: 39}
        engines[space] = restored
    _feed(engines, 40, 80)  # and the stream goes on
    for space, engine in engines.items():
        store = RedisStore(client, space)
        assert store.count() == 80
        assert OnlineRankOrder.restore(store, DIM, settings()).labels() == engine.labels()
        store.clear()
