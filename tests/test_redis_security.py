"""The clustering state over TLS with an ACL user of the least rights, on a real TLS-only redis-server: the
cluster stage works end to end; a user with fewer rights, a wrong password or a server certificate signed by
another authority is refused at start with a clear reason, and no password appears in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import RedisAddress, check_permissions, connect
from clustering.redis_state.redis_store import RedisStore
from clustering.store import StoreError
from tests.local_services import fresh_kafka, wait_for
from tests.secure_redis import CLUSTER_STAGE_RIGHTS, READ_ONLY_RIGHTS, TlsRedis, make_ca, tls_redis
from tests.streams import identities_view, read_all, reference_labels, running, synthetic_faces
from workers.cluster.cluster_worker import ClusterWorker
from workers.settings import Settings, WorkerSettings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    users = {"facestream": CLUSTER_STAGE_RIGHTS, "reader": READ_ONLY_RIGHTS}
    with tls_redis(tmp_path_factory.mktemp("tls-redis"), users) as running:
        yield running


def _password_file(tmp_path: Path, server: TlsRedis, user: str) -> Path:
    path = tmp_path / f"{user}.password"
    path.write_text(server.passwords[user] + "\n")
    return path


def test_the_cluster_stage_works_over_tls_with_the_least_rights(
    kafka_bootstrap: str, server: TlsRedis, tmp_path: Path
) -> None:
    kafka = fresh_kafka(kafka_bootstrap)
    suffix = kafka.faces_topic.removeprefix("faces-")
    worker = WorkerSettings(
        cluster_group=f"cluster-{suffix}",
        redis_url=server.url("facestream"),
        redis_password_file=_password_file(tmp_path, server, "facestream"),
        redis_ca_file=server.ca_file,
        metrics_port=0,
    )
    settings = Settings(kafka=kafka, worker=worker)
    records = synthetic_faces(300, identities=20, space=f"tls{suffix}", seed=17)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for record in records:
        producer.produce(kafka.faces_topic, key=record.space.encode(), value=record.to_json())
    assert producer.flush(30) == 0

    client = connect(worker.redis_address())  # as `facestream worker` does at start
    check_permissions(client, worker.redis_url)
    cluster = ClusterWorker(settings, client)
    store = RedisStore(client, f"tls{suffix}")
    with running(cluster):
        wait_for(lambda: store.count() == len(records), 120, "every face clustered over TLS")
    expected = reference_labels(records, settings.clustering)
    assert OnlineRankOrder.restore(store, 512, settings.clustering).labels() == expected
    assigned, view = identities_view([v for _, v in read_all(kafka_bootstrap, kafka.identities_topic)])
    assert set(assigned.values()) == {1}
    assert view == expected


def test_a_user_with_fewer_rights_is_named_at_start(server: TlsRedis, tmp_path: Path) -> None:
    address = RedisAddress(server.url("reader"), server.passwords["reader"], ca_file=str(server.ca_file))
    client = connect(address)  # it may connect and read ...
    with pytest.raises(StoreError, match="may not do what the cluster stage needs") as refused:
        check_permissions(client, address.url)  # ... but not write
    assert server.passwords["reader"] not in str(refused.value)


def test_a_wrong_password_and_an_unknown_authority_are_refused_clearly(server: TlsRedis, tmp_path: Path) -> None:
    wrong = RedisAddress(server.url("facestream"), "not-the-password", ca_file=str(server.ca_file))
    with pytest.raises(StoreError, match="refused the password"):
        connect(wrong, retries=0)
    other_ca, _ = make_ca(tmp_path, "another-ca")
    untrusted = RedisAddress(server.url("facestream"), server.passwords["facestream"], ca_file=str(other_ca))
    with pytest.raises(StoreError, match="unreachable") as refused:
        connect(untrusted, retries=0)
    assert "certificate verify failed" in str(refused.value)
    assert server.passwords["facestream"] not in str(refused.value)
