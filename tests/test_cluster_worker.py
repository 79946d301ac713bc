"""The cluster worker on the real broker and Redis: one assignment per face, the clusters of an uninterrupted
in-memory run, bad records dead-lettered, and the same result through crashes, restarts and Redis outages."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from clustering.engine import OnlineRankOrder
from clustering.lease import WriterLease
from clustering.redis_client import connect
from clustering.redis_store import RedisStore
from clustering.settings import ClusteringSettings, RankOrderSettings
from clustering.store import StoreError
from streaming.messages import DeadLetter, FaceRecord
from tests.streams import identities_view, read_all, reference_labels, synthetic_faces
from workers.cluster_worker import ClusterWorker
from workers.local_services import free_port, fresh_kafka, http_get, redis_server, settings_env, wait_for
from workers.settings import Settings, WorkerSettings


def _settings(bootstrap: str, redis_url: str, **worker: object) -> Settings:
    kafka = fresh_kafka(bootstrap)
    group = "cluster-" + kafka.faces_topic.removeprefix("faces-")
    config = WorkerSettings(cluster_group=group, redis_url=redis_url, metrics_port=0, **worker)
    return Settings(kafka=kafka, worker=config)


def _space(settings: Settings) -> str:
    """The identity space of a test's faces: its own, like its topics."""
    return "s" + settings.kafka.faces_topic.removeprefix("faces-")


def _publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, key=b"k", value=value)
    assert producer.flush(30) == 0


def _state_labels(settings: Settings, space: str | None = None) -> dict[str, int]:
    store = RedisStore(connect(settings.worker.redis_url), space or _space(settings))
    return OnlineRankOrder.restore(store, 512, settings.clustering).labels()


@pytest.fixture
def running() -> Iterator[Callable[[ClusterWorker, Callable[[], bool]], None]]:
    """Runs a worker in a thread until a condition holds, then stops it cleanly."""
    threads: list[tuple[threading.Thread, threading.Event]] = []

    def start(worker: ClusterWorker, done: Callable[[], bool], timeout_s: float = 120) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop.is_set,), daemon=True)
        thread.start()
        threads.append((thread, stop))
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.1)
        stop.set()
        thread.join(timeout=60)
        assert done(), "the worker did not finish in time"

    yield start
    for thread, stop in threads:
        stop.set()
        thread.join(timeout=60)


def _faces_with_bad_records(settings: Settings) -> tuple[list[FaceRecord], list[bytes], dict[str, bytes]]:
    records = synthetic_faces(600, identities=40, space=_space(settings), seed=3)
    good = records[0]
    bad = {
        "bad_embedding": good.model_copy(
            update={"face_id": "x:1:0", "embedding": FaceRecord.encode_embedding(good.vector()[:128]), "dimension": 128}
        ).to_json(),
        "unknown_version": good.to_json().replace(b'"version":2', b'"version":7'),
        "malformed": b'{"face_id": "x:2:0"}',
        "empty": b"",
    }
    values = [r.to_json() for r in records]
    # A replay of the first 50 records (an embed worker that crashed before committing), the bad records and
    # a face of another identity space on the same partition.
    foreign = records[1].model_copy(update={"space": _space(settings) + "b", "face_id": "y:1:0"}).to_json()
    # A bad record with the id of the good face after it: refused, and the good one clustered.
    twin = records[300].model_copy(update={"embedding": FaceRecord.encode_embedding(np.zeros(512, np.float32))})
    stream = values[:300] + list(bad.values()) + [foreign, twin.to_json()] + values[300:] + values[:50]
    return records, stream, {**bad, "bad_embedding (twin)": twin.to_json()}


def test_one_assignment_per_face_and_the_clusters_of_an_in_memory_run(
    kafka_bootstrap: str, redis_url: str, running: Callable[..., None]
) -> None:
    settings = _settings(kafka_bootstrap, redis_url)
    records, stream, bad = _faces_with_bad_records(settings)
    _publish(kafka_bootstrap, settings.kafka.faces_topic, stream)

    worker = ClusterWorker(settings, connect(redis_url))

    def seen() -> int:
        c = worker.counters
        return c.faces + c.duplicates + sum(c.dead_letters.values())

    running(worker, lambda: seen() >= len(stream))

    assert worker.counters.faces == len(records) + 1
    assert worker.counters.duplicates == 50
    assert worker.counters.takeovers == 2  # one worker writes both spaces
    expected = reference_labels(records, settings.clustering)
    assert _state_labels(settings) == expected
    assert _state_labels(settings, _space(settings) + "b") == {"y:1:0": 0}
    identities = [v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)]
    assigned, view = identities_view([v for v in identities if b'"y:1:0"' not in v])
    assert set(assigned) == set(expected)
    assert set(assigned.values()) == {1}
    assert view == expected  # assignments and merges rebuild the final clusters
    assert sum(b'"y:1:0"' in v for v in identities) == 1
    letters = [DeadLetter.from_json(v) for _, v in read_all(kafka_bootstrap, settings.kafka.dead_letter_topic)]
    assert sorted(letter.value or "" for letter in letters) == sorted(
        DeadLetter.b64(value) or "" for value in bad.values()
    )
    assert all(letter.stage == "cluster" for letter in letters)
    assert sorted(letter.reason for letter in letters) == sorted(reason.split(" ")[0] for reason in bad)


def test_a_writer_stores_index_snapshots_from_forked_children_as_it_goes_and_restarts_from_them(
    kafka_bootstrap: str, redis_url: str, running: Callable[..., None]
) -> None:
    settings = _settings(kafka_bootstrap, redis_url)
    settings = settings.model_copy(
        update={"clustering": ClusteringSettings(rank_order=RankOrderSettings(snapshot_every=100))}
    )
    records = synthetic_faces(600, identities=40, space=_space(settings), seed=4)
    _publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records])
    snapshots_before = REGISTRY.get_sample_value("facestream_snapshot_seconds_count") or 0
    worker = ClusterWorker(settings, connect(redis_url))  # a Kafka consumer, a producer and a lease keeper: threads
    store = RedisStore(connect(redis_url), _space(settings))
    running(worker, lambda: worker.counters.faces == len(records) and store.snapshot()[1] >= 500)
    expected = reference_labels(records, settings.clustering)
    assert _state_labels(settings) == expected  # restored from the latest snapshot plus the faces after it
    assert (REGISTRY.get_sample_value("facestream_snapshot_seconds_count") or 0) >= snapshots_before + 2


def test_a_writer_that_stops_hands_its_space_over_with_a_snapshot_of_every_face(
    kafka_bootstrap: str, redis_url: str, running: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("clustering.compaction.HANDOVER_MIN_FACES", 1)
    settings = _settings(kafka_bootstrap, redis_url)
    settings = settings.model_copy(
        update={"clustering": ClusteringSettings(rank_order=RankOrderSettings(snapshot_every=100_000))}
    )
    records = synthetic_faces(300, identities=20, space=_space(settings), seed=5)
    _publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records])
    worker = ClusterWorker(settings, connect(redis_url))
    running(worker, lambda: worker.counters.faces == len(records))  # then a clean stop
    store = RedisStore(connect(redis_url), _space(settings))
    # The next writer inserts no face again but the last, partial insert block's (44 of 300).
    assert store.snapshot()[1] == len(records) - len(records) % settings.clustering.index.insert_block
    assert _state_labels(settings) == reference_labels(records, settings.clustering)


def test_a_worker_killed_mid_stream_and_restarted_ends_like_an_uninterrupted_run(
    kafka_bootstrap: str, redis_url: str
) -> None:
    settings = _settings(kafka_bootstrap, redis_url)
    records = synthetic_faces(4000, identities=300, space=_space(settings), seed=5)
    _publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records])
    store = RedisStore(connect(redis_url), _space(settings))
    command = [sys.executable, "-m", "workers.cli", "worker", "--role", "cluster"]

    port = free_port()
    env = settings_env(
        settings,
        FACESTREAM_WORKER__METRICS_PORT=str(port),
        FACESTREAM_WORKER__LEASE_TTL_S="2",
        FACESTREAM_WORKER__LOG_FORMAT="json",
    )
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: store.count() >= 800 or first.poll() is not None, 120, "the first worker to cluster 800 faces")
        first.kill()  # SIGKILL: no clean-up at all, possibly inside a transaction
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = store.count()
    assert 800 <= killed_at < len(records), first.communicate()[1]

    second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: store.count() == len(records), 120, "the restarted worker to cluster every face")
        wait_for(lambda: http_get(port, "/readyz")[0] == 200, 10, "/readyz")
        status, scraped = http_get(port, "/metrics")
        assert status == 200
        assert "facestream_faces_clustered_total" in scraped
        assert http_get(port, "/healthz")[0] == 200
        second.send_signal(signal.SIGTERM)
        try:
            out, err = second.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            second.send_signal(signal.SIGINT)  # a second signal interrupts at once
            out, err = second.communicate(timeout=30)
            pytest.fail(f"the worker did not stop within 60 s of SIGTERM:\n{err.decode()[-6000:]}")
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, err
    assert out.decode().startswith("stopped: ")

    expected = reference_labels(records, settings.clustering)
    assert _state_labels(settings) == expected
    assigned, view = identities_view([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
    assert set(assigned) == set(expected)
    assert set(assigned.values()) == {1}, "a face was assigned twice on the identities topic"
    assert view == expected


def test_a_redis_outage_makes_the_worker_wait_and_lose_nothing(
    kafka_bootstrap: str, tmp_path: Path, running: Callable[..., None]
) -> None:
    with redis_server(tmp_path, durable=True) as server:
        settings = _settings(kafka_bootstrap, server.url, retry_max_s=1.0)
        records = synthetic_faces(3000, identities=200, space=_space(settings), seed=7)
        _publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records])
        worker = ClusterWorker(settings, connect(server.url))
        store = RedisStore(connect(server.url, retries=0), _space(settings))
        readiness: list[bool] = []

        def outage() -> None:
            wait_for(lambda: store.count() >= 600, 120, "600 faces before the outage")
            server.stop()
            wait_for(lambda: not worker.health.report()[0], 30, "the worker to report not-ready")
            readiness.append(worker.health.report()[0])
            time.sleep(3)
            server.start()

        thread = threading.Thread(target=outage, daemon=True)
        thread.start()
        running(worker, lambda: not thread.is_alive() and store.count() == len(records), 180)
        assert readiness == [False]
        assert worker.health.report()[0]
        assert worker.counters.takeovers >= 2
        expected = reference_labels(records, settings.clustering)
        assert _state_labels(settings) == expected
        assigned, view = identities_view([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
        assert set(assigned) == set(expected)
        assert set(assigned.values()) == {1}
        assert view == expected


def test_a_standby_waits_for_the_lease_and_takes_over_where_the_writer_stopped(
    kafka_bootstrap: str, redis_url: str
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, lease_ttl_s=1.0)
    records = synthetic_faces(400, identities=30, space=_space(settings), seed=11)
    _publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records[:200]])
    writer, standby = ClusterWorker(settings, connect(redis_url)), ClusterWorker(settings, connect(redis_url))
    stops = [threading.Event(), threading.Event()]
    threads = [
        threading.Thread(target=w.run, args=(s.is_set,), daemon=True)
        for w, s in zip((writer, standby), stops, strict=True)
    ]
    threads[0].start()
    wait_for(lambda: writer.counters.faces == 200, 60, "the writer")
    threads[1].start()
    time.sleep(2.5)
    assert standby.counters.faces == 0
    # A standby is doing its job: ready, so no alert fires and no orchestrator restarts it.
    assert standby.health.report() == (
        True,
        f"standby: no partition of {settings.kafka.faces_topic} is assigned to this worker",
    )

    stops[0].set()  # a clean stop gives the lease back
    threads[0].join(timeout=30)
    _publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records[200:]])
    wait_for(lambda: standby.counters.faces == 200, 60, "the standby to take over")
    stops[1].set()
    threads[1].join(timeout=30)
    assert _state_labels(settings) == reference_labels(records, settings.clustering)
    assigned, _ = identities_view([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
    assert len(assigned) == 400
    assert set(assigned.values()) == {1}


def test_a_writer_whose_lease_lapsed_is_refused(redis_url: str) -> None:
    client = connect(redis_url)
    space = f"lease{uuid.uuid4().hex[:8]}"
    old = WriterLease(client, space, ttl_s=0.6)
    assert old.acquire()
    store = RedisStore(client, space, old.token)
    engine = OnlineRankOrder(512, ClusteringSettings(), store)
    records = synthetic_faces(3, identities=2, space=space)
    engine.add(records[0].face_id, records[0].vector(), offset=(0, 0))
    time.sleep(0.8)  # the old writer stalls past its lease ...
    new = WriterLease(client, space, ttl_s=5)
    assert new.acquire()  # ... and a standby takes over
    with pytest.raises(StoreError, match="no longer holds the writer lease"):
        engine.add(records[1].face_id, records[1].vector(), offset=(0, 1))
    assert not old.renew()
    assert RedisStore(client, space).count() == 1


def test_a_wiped_state_is_rebuilt_from_the_faces_topic_without_publishing_again(
    kafka_bootstrap: str, redis_url: str, running: Callable[..., None]
) -> None:
    settings = _settings(kafka_bootstrap, redis_url)
    records = synthetic_faces(300, identities=20, space=_space(settings), seed=13)
    _publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records])
    store = RedisStore(connect(redis_url), _space(settings))
    first = ClusterWorker(settings, connect(redis_url))
    running(first, lambda: store.count() == len(records))
    store.clear()  # Redis lost the space (no persistence, a flushed database, a failed-over empty replica)

    second = ClusterWorker(settings, connect(redis_url))
    running(second, lambda: store.count() == len(records))
    assert _state_labels(settings) == reference_labels(records, settings.clustering)
    assigned, view = identities_view([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
    assert set(assigned.values()) == {1}, "the rebuild published assignments a second time"
    assert view == reference_labels(records, settings.clustering)
