"""Faces records that killed cluster workers: on the real broker and Redis, a worker that places a partition
whose mark says two workers died applying one record dead-letters that record and clusters every other; one
that finds a range a single worker died in runs it a record at a time and serves all of it; no mark is left."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from clustering.redis_state.redis_client import connect
from streaming.messages import DeadLetter
from tests.local_services import fresh_kafka, wait_for
from tests.streams import read_all, running, synthetic_faces
from workers.cluster.cluster_crash_guard import mark_key
from workers.cluster.cluster_worker import ClusterWorker
from workers.plumbing.crash_guard import Trying, with_trying
from workers.settings import Settings, WorkerSettings


@pytest.mark.parametrize(
    ("left", "clustered", "refused"),
    [(Trying(5, 5, 2), 11, [5]), (Trying(3, 8, 1), 12, [])],
    ids=["a record that killed two workers", "a range one worker died in"],
)
def test_a_cluster_worker_skips_only_the_record_that_killed_workers(
    kafka_bootstrap: str, redis_url: str, left: Trying, clustered: int, refused: list[int]
) -> None:
    kafka = fresh_kafka(kafka_bootstrap)
    suffix = kafka.faces_topic.removeprefix("faces-")
    group = f"cluster-{suffix}"
    settings = Settings(kafka=kafka, worker=WorkerSettings(cluster_group=group, redis_url=redis_url))
    records = synthetic_faces(12, identities=3, space=f"c{suffix}")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for record in records:
        producer.produce(kafka.faces_topic, key=record.space.encode(), value=record.to_json())
    assert producer.flush(30) == 0
    client = connect(redis_url)
    client.set(mark_key(group, kafka.faces_topic, 0), with_trying("", left))  # as dead workers leave it

    worker = ClusterWorker(settings, client)
    with running(worker):
        wait_for(lambda: worker.counters.faces == clustered, 60, "every other face")
        wait_for(lambda: sum(worker.counters.dead_letters.values()) == len(refused), 30, "the dead letters")

    letters = [DeadLetter.from_json(v) for _, v in read_all(kafka_bootstrap, kafka.dead_letter_topic)]
    assert [(letter.reason, letter.stage, letter.offset) for letter in letters] == [
        ("crashed_worker", "cluster", offset) for offset in refused
    ]
    assert client.get(mark_key(group, kafka.faces_topic, 0)) is None  # every group ran through
