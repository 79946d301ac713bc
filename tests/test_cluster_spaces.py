"""Many identity spaces over several cluster workers, on the real broker and Redis: the faces topic is keyed by
space, the workers of one group share its partitions, and a killed worker's spaces move to the others with
nothing lost and nothing assigned twice."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from confluent_kafka import Message, Producer

from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_keys import Key, SpaceKeys
from clustering.redis_state.redis_store import RedisStore
from clustering.redis_state.space_registry import SpaceRegistry
from clustering.store import StoreError
from streaming.messages import DeadLetter, FaceRecord
from tests.cluster_worker_runs import leased_store
from tests.local_services import free_port, fresh_kafka, http_get, settings_env, wait_for
from tests.streams import identities_view, read_all, reference_labels, running, synthetic_faces
from workers.cluster.cluster_worker import ClusterWorker
from workers.settings import Settings, WorkerSettings

SPACES, PARTITIONS, WORKERS = 12, 12, 3


def _space_names(prefix: str) -> list[str]:
    """Twelve space names that librdkafka's default partitioner (CRC32 of the key) puts on twelve partitions."""
    by_partition: dict[int, str] = {}
    candidate = 0
    while len(by_partition) < SPACES:
        name = f"{prefix}-{candidate}"
        by_partition.setdefault(zlib.crc32(name.encode()) % PARTITIONS, name)
        candidate += 1
    return sorted(by_partition.values())


def _publish_keyed_by_space(bootstrap: str, topic: str, records: list[FaceRecord]) -> dict[str, set[int]]:
    """Produces as the embed worker does (key: the space); returns the partitions each space's faces went to."""
    partitions: dict[str, set[int]] = {}

    def delivered(error: object, message: Message) -> None:
        assert error is None, error
        partitions.setdefault((message.key() or b"").decode(), set()).add(message.partition() or 0)

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for record in records:
        producer.produce(topic, key=record.space.encode(), value=record.to_json(), on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    return partitions


def _writes(port: int) -> int:
    """The spaces a worker writes now, from its /metrics."""
    status, scraped = http_get(port, "/metrics")
    found = re.search(r"^facestream_writer (\S+)$", scraped, re.MULTILINE)
    return int(float(found.group(1))) if status == 200 and found else 0


def test_twelve_spaces_spread_over_three_workers_and_a_killed_one_loses_nothing(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    kafka = fresh_kafka(kafka_bootstrap, faces_partitions=PARTITIONS, session_timeout_ms=6000)
    suffix = kafka.faces_topic.removeprefix("faces-")
    settings = Settings(
        kafka=kafka, worker=WorkerSettings(cluster_group=f"cluster-{suffix}", redis_url=redis_url, lease_ttl_s=2)
    )
    spaces = _space_names(f"m{suffix}")
    per_space = {space: synthetic_faces(600, identities=40, space=space, seed=i) for i, space in enumerate(spaces)}
    # Interleaved, as cameras of many sites would send them: a first part, then the rest.
    first = [records[i] for i in range(200) for records in per_space.values()]
    rest = [records[i] for i in range(200, 600) for records in per_space.values()]
    total = len(first) + len(rest)

    ports = [free_port() for _ in range(WORKERS)]
    command = [sys.executable, "-m", "workers.cli", "worker", "--role", "cluster"]
    # Logs to files: a pipe nobody reads while the test waits would fill up and stall the worker.
    logs = [(tmp_path / f"worker{i}.log").open("wb") for i in range(WORKERS)]
    workers = [
        subprocess.Popen(
            command,
            env=settings_env(settings, FACESTREAM_WORKER__METRICS_PORT=str(port)),
            stdout=subprocess.PIPE,
            stderr=log,
        )
        for port, log in zip(ports, logs, strict=True)
    ]
    stores = {space: RedisStore(connect(redis_url), space) for space in spaces}

    def applied() -> int:
        return sum(store.count() for store in stores.values())

    identities: list[bytes] = []

    def of_space(space: str) -> list[bytes]:
        return [v for v in identities if f'"space":"{space}"'.encode() in v]

    def every_assignment() -> bool:
        # Face ids repeat across spaces (each space's cameras are cam0..cam2): counted per space.
        identities[:] = [v for _, v in read_all(kafka_bootstrap, kafka.identities_topic, idle_s=1.0)]
        return all(len(identities_view(of_space(space))[0]) == len(per_space[space]) for space in spaces)

    try:
        # Each worker holds partitions of the faces topic ("standby: no partition ..." until then).
        ready = (200, "cluster: ready")
        wait_for(lambda: all(http_get(port, "/readyz") == ready for port in ports), 90, "the group to settle")
        partitions = _publish_keyed_by_space(kafka_bootstrap, kafka.faces_topic, first)
        assert all(len(found) == 1 for found in partitions.values()), partitions  # a space stays on one partition
        assert len(set().union(*partitions.values())) == PARTITIONS
        wait_for(lambda: applied() == len(first), 120, "the first part")
        wait_for(lambda: sum(_writes(port) for port in ports) == SPACES, 30, "every space to have one writer")
        writes = [_writes(port) for port in ports]
        assert all(writes), f"spaces per worker: {writes}"  # spread: no worker writes them all

        _publish_keyed_by_space(kafka_bootstrap, kafka.faces_topic, rest)
        wait_for(lambda: applied() >= len(first) + len(rest) // 10, 120, "a tenth of the rest")
        victim = max(range(WORKERS), key=lambda i: writes[i])
        workers[victim].kill()  # SIGKILL: no clean-up, possibly inside a transaction
        workers[victim].wait(timeout=10)
        assert applied() < total, "the stream ended before the kill"

        wait_for(lambda: applied() == total, 240, "the survivors to cluster every face")
        survivors = [i for i in range(WORKERS) if i != victim]
        wait_for(lambda: sum(_writes(ports[i]) for i in survivors) == SPACES, 30, "the survivors to own every space")
        # The faces the killed worker applied but never committed have their events published by the survivor
        # that reads them again. Until the broker aborts the killed worker's open transaction (its timeout, 20 s,
        # then the broker's next clean-up round), read_committed readers of the identities topic wait.
        wait_for(every_assignment, 90, "every assignment to be readable")
        for i in survivors:
            workers[i].send_signal(signal.SIGTERM)
        for i in survivors:
            out, _ = workers[i].communicate(timeout=60)
            assert workers[i].returncode == 0, (tmp_path / f"worker{i}.log").read_text()[-4000:]
            assert out.decode().startswith("stopped: ")
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        for log in logs:
            log.close()

    for space, records in per_space.items():
        expected = reference_labels(records, settings.clustering)
        assert OnlineRankOrder.restore(stores[space], 512, settings.clustering).labels() == expected
        assigned, view = identities_view(of_space(space))
        assert set(assigned) == set(expected), space
        assert set(assigned.values()) == {1}, f"a face of {space} was assigned twice"
        assert view == expected


def test_a_face_of_a_space_on_another_partition_is_a_dead_letter(kafka_bootstrap: str, redis_url: str) -> None:
    kafka = fresh_kafka(kafka_bootstrap, faces_partitions=2)
    suffix = kafka.faces_topic.removeprefix("faces-")
    settings = Settings(kafka=kafka, worker=WorkerSettings(cluster_group=f"cluster-{suffix}", redis_url=redis_url))
    records = synthetic_faces(20, identities=3, space=f"w{suffix}")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for record in records[:10]:
        producer.produce(kafka.faces_topic, key=b"camera", value=record.to_json(), partition=0)
    assert producer.flush(30) == 0
    worker = ClusterWorker(settings, connect(redis_url))
    with running(worker):
        wait_for(lambda: worker.counters.faces == 10, 60, "the faces on the space's partition")
        # A producer that keys by camera: the same space's later faces land on the other partition.
        for record in records[10:]:
            producer.produce(kafka.faces_topic, key=b"camera", value=record.to_json(), partition=1)
        assert producer.flush(30) == 0
        wait_for(lambda: worker.counters.dead_letters["wrong_partition"] == 10, 60, "the misrouted faces")
    assert worker.counters.faces == 10
    letters = [DeadLetter.from_json(v) for _, v in read_all(kafka_bootstrap, kafka.dead_letter_topic)]
    assert {(letter.reason, letter.partition) for letter in letters} == {("wrong_partition", 1)}
    assert len(letters) == 10  # the faces are kept, to be replayed to the right partition


def test_a_quiet_space_records_how_far_its_partition_was_read(redis_url: str) -> None:
    client = connect(redis_url)
    lease, store = leased_store(client, "quiet", ttl_s=5)
    store.applied_through(3, 120)
    store.applied_through(3, 80)  # never backwards
    assert store.offsets() == {3: 120}
    stranger = RedisStore(client, lease.space, "not-the-lease")
    with pytest.raises(StoreError, match="no longer holds the writer lease"):
        stranger.applied_through(3, 500)
    assert store.offsets() == {3: 120}


def test_an_idle_space_leaves_the_worker_and_comes_back_with_its_state(kafka_bootstrap: str, redis_url: str) -> None:
    kafka = fresh_kafka(kafka_bootstrap)
    suffix = kafka.faces_topic.removeprefix("faces-")
    worker_settings = WorkerSettings(cluster_group=f"cluster-{suffix}", redis_url=redis_url, space_idle_s=1.5)
    settings = Settings(kafka=kafka, worker=worker_settings)
    busy, idle = f"busy{suffix}", f"idle{suffix}"
    idle_faces = synthetic_faces(30, identities=3, space=idle)
    busy_faces = synthetic_faces(200, identities=5, space=busy, seed=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def send(records: list[FaceRecord]) -> None:
        for record in records:
            producer.produce(kafka.faces_topic, key=record.space.encode(), value=record.to_json())
        assert producer.flush(30) == 0

    client = connect(redis_url)
    registry = SpaceRegistry(client, kafka.faces_topic)
    worker = ClusterWorker(settings, client)
    with running(worker):
        send(idle_faces[:20])
        wait_for(lambda: worker.counters.faces == 20, 60, "the idle space's first faces")
        for start in range(0, 100, 10):  # only the busy space has faces from now on
            send(busy_faces[start : start + 10])
            time.sleep(0.3)
        wait_for(lambda: worker.counters.idle_releases == 1, 30, "the idle space to be handed over")
        assert worker.writers.names() == [busy]
        assert registry.spaces(0) == {busy}
        assert client.get(SpaceKeys(idle).of(Key.WRITER)) is None  # its lease given back
    # A restart places the partition without taking the idle space over or reading its past again.
    again = ClusterWorker(settings, client)
    with running(again):
        send(busy_faces[100:110])
        wait_for(lambda: again.counters.faces == 10, 60, "the busy space's next faces")
        assert again.writers.names() == [busy]
        assert again.counters.duplicates == 0
        send(idle_faces[20:])
        wait_for(lambda: again.counters.faces == 20, 60, "the idle space's next faces")
    assert RedisStore(client, idle).count() == 30  # its first twenty were there still
    assert registry.spaces(0) == {busy, idle}
    values = [v for _, v in read_all(kafka_bootstrap, kafka.identities_topic) if f'"space":"{idle}"'.encode() in v]
    assigned, views = identities_view(values)
    assert set(assigned.values()) == {1}
    # As if it had never left: its later faces were clustered with its first ones.
    assert views == reference_labels(idle_faces, settings.clustering)
