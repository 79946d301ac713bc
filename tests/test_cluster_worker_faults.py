"""The cluster worker through faults on the real broker and Redis: killed and restarted, a Redis outage, a
standby taking over, a lapsed lease, a wiped state: each ends like an uninterrupted run, nothing lost or
published twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clustering.engine import OnlineRankOrder
from clustering.redis_state.lease import WriterLease
from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_store import RedisStore
from clustering.settings import ClusteringSettings
from clustering.store import StoreError
from tests.cluster_worker_runs import cluster_settings, face_space, leased_store, publish, state_labels
from tests.local_services import free_port, http_get, redis_server, settings_env, wait_for
from tests.streams import identities_view, read_all, reference_labels, synthetic_faces
from workers.cluster.cluster_worker import ClusterWorker


def test_a_worker_killed_mid_stream_and_restarted_ends_like_an_uninterrupted_run(
    kafka_bootstrap: str, redis_url: str
) -> None:
    settings = cluster_settings(kafka_bootstrap, redis_url)
    records = synthetic_faces(4000, identities=300, space=face_space(settings), seed=5)
    publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records])
    store = RedisStore(connect(redis_url), face_space(settings))
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
    assert state_labels(settings) == expected
    assigned, view = identities_view([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
    assert set(assigned) == set(expected)
    assert set(assigned.values()) == {1}, "a face was assigned twice on the identities topic"
    assert view == expected


def test_a_redis_outage_makes_the_worker_wait_and_lose_nothing(
    kafka_bootstrap: str, tmp_path: Path, running: Callable[..., None]
) -> None:
    with redis_server(tmp_path, durable=True) as server:
        settings = cluster_settings(kafka_bootstrap, server.url, retry_max_s=1.0)
        records = synthetic_faces(3000, identities=200, space=face_space(settings), seed=7)
        publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records])
        worker = ClusterWorker(settings, connect(server.url))
        store = RedisStore(connect(server.url, retries=0), face_space(settings))
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
        assert state_labels(settings) == expected
        assigned, view = identities_view([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
        assert set(assigned) == set(expected)
        assert set(assigned.values()) == {1}
        assert view == expected


def test_a_standby_waits_for_the_lease_and_takes_over_where_the_writer_stopped(
    kafka_bootstrap: str, redis_url: str
) -> None:
    settings = cluster_settings(kafka_bootstrap, redis_url, lease_ttl_s=1.0)
    records = synthetic_faces(400, identities=30, space=face_space(settings), seed=11)
    publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records[:200]])
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
    publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records[200:]])
    wait_for(lambda: standby.counters.faces == 200, 60, "the standby to take over")
    stops[1].set()
    threads[1].join(timeout=30)
    assert state_labels(settings) == reference_labels(records, settings.clustering)
    assigned, _ = identities_view([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
    assert len(assigned) == 400
    assert set(assigned.values()) == {1}


def test_a_writer_whose_lease_lapsed_is_refused(redis_url: str) -> None:
    client = connect(redis_url)
    old, store = leased_store(client, "lease", ttl_s=0.6)
    space = old.space
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
    settings = cluster_settings(kafka_bootstrap, redis_url)
    records = synthetic_faces(300, identities=20, space=face_space(settings), seed=13)
    publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records])
    store = RedisStore(connect(redis_url), face_space(settings))
    first = ClusterWorker(settings, connect(redis_url))
    running(first, lambda: store.count() == len(records))
    store.clear()  # Redis lost the space (no persistence, a flushed database, a failed-over empty replica)

    second = ClusterWorker(settings, connect(redis_url))
    running(second, lambda: store.count() == len(records))
    assert state_labels(settings) == reference_labels(records, settings.clustering)
    assigned, view = identities_view([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
    assert set(assigned.values()) == {1}, "the rebuild published assignments a second time"
    assert view == reference_labels(records, settings.clustering)
