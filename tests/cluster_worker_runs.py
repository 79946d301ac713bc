"""Helpers of the cluster worker's tests: settings on fresh topics, the test's own identity space, publishing
faces, a writer's store of a fresh space and reading back the state a worker left in Redis."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer

from clustering.engine import OnlineRankOrder
from clustering.redis_state.lease import WriterLease
from clustering.redis_state.redis_client import RedisClient, connect
from clustering.redis_state.redis_store import RedisStore
from tests.local_services import fresh_kafka
from workers.settings import Settings, WorkerSettings


def cluster_settings(bootstrap: str, redis_url: str, **worker: object) -> Settings:
    kafka = fresh_kafka(bootstrap)
    group = "cluster-" + kafka.faces_topic.removeprefix("faces-")
    config = WorkerSettings(cluster_group=group, redis_url=redis_url, metrics_port=0, **worker)
    return Settings(kafka=kafka, worker=config)


def face_space(settings: Settings) -> str:
    """The identity space of a test's faces: its own, like its topics."""
    return "s" + settings.kafka.faces_topic.removeprefix("faces-")


def publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, key=b"k", value=value)
    assert producer.flush(30) == 0


def state_labels(settings: Settings, space: str | None = None) -> dict[str, int]:
    store = RedisStore(connect(settings.worker.redis_url), space or face_space(settings))
    return OnlineRankOrder.restore(store, 512, settings.clustering).labels()


def leased_store(client: RedisClient, prefix: str, ttl_s: float) -> tuple[WriterLease, RedisStore]:
    """A fresh space named after ``prefix``, its writer lease taken, and the store that writes through it."""
    lease = WriterLease(client, f"{prefix}{uuid.uuid4().hex[:8]}", ttl_s)
    assert lease.acquire()
    return lease, RedisStore(client, lease.space, lease.token)
