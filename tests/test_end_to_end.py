"""Frames in, identities out, through the real broker and Redis: `facestream worker --role all` gives exactly
one assignment per face and the clusters `facestream run` gives on the same frames; two embed workers lose
nothing when one of them is killed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import Message

from clustering.engine import OnlineRankOrder
from clustering.redis_store import RedisStore, connect
from models.analyzer import FaceAnalyzer
from models.settings import ModelSettings
from streaming.decode import decode_image
from streaming.messages import FaceRecord, FrameHeaders, face_id
from streaming.produce import produce_frames
from streaming.sources import FrameSource
from tests.conftest import data_dir
from tests.services import free_port, start_kafka, stop_kafka
from tests.streams import (
    end_offsets,
    fresh_kafka,
    http_get,
    identities_view,
    read_all,
    read_messages,
    settings_env,
    wait_for,
)
from tests.test_deploy import assert_dashboard_and_alerts_use_exported_metrics
from workers.cluster_worker import ClusterWorker
from workers.embed_worker import EmbedWorker
from workers.run_job import run_pipeline
from workers.settings import Settings, WorkerSettings

VIDEOS = {
    "classroom": "intel_classroom.mp4",
    "pair": "intel_head-pose-face-detection-female-and-male.mp4",
    "walking": "intel_face-demographics-walking.mp4",
}


def _settings(bootstrap: str, redis_url: str, cpu_models: ModelSettings, partitions: int = 1) -> Settings:
    kafka = fresh_kafka(bootstrap, partitions, session_timeout_ms=6000)
    space = "e" + kafka.frames_topic.removeprefix("frames-")
    return Settings(models=cpu_models, kafka=kafka, worker=WorkerSettings(space=space, redis_url=redis_url))


def _worker(settings: Settings, role: str, group: str, port: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "workers.cli", "worker", "--role", role, "--cpu", "--group", group]
    return subprocess.Popen(
        command,
        env=settings_env(settings, FACESTREAM_WORKER__METRICS_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()


def test_frames_in_identities_out_equal_facestream_run(
    kafka_bootstrap: str, redis_url: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer, tmp_path: Path
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, cpu_models)
    sources = [FrameSource(str(data_dir("videos", name)), camera) for camera, name in VIDEOS.items()]
    produced = produce_frames(sources, settings.kafka, space=settings.worker.space, fps=0, progress=False)
    assert produced.failed == 0

    # `facestream run` on the very frames the workers receive (the JPEGs on the frames topic).
    frames_dir = tmp_path / "frames"
    for key, value in read_all(kafka_bootstrap, settings.kafka.frames_topic, idle_s=1.0):
        assert key is not None
        camera_dir = frames_dir / key.decode()
        camera_dir.mkdir(parents=True, exist_ok=True)
        (camera_dir / f"{len(list(camera_dir.iterdir())):06d}.jpg").write_bytes(value)
    summary = run_pipeline(
        [FrameSource(str(frames_dir / camera), camera) for camera in VIDEOS],
        tmp_path / "run",
        settings,
        analyzer=analyzer,
        progress=False,
    )
    lines = [json.loads(line) for line in (tmp_path / "run" / "faces.jsonl").read_text().splitlines()]
    expected = {line["face_id"]: line["cluster"] for line in lines if line["cluster"] is not None}
    assert summary.frames == produced.frames
    assert len(expected) > 50

    port = free_port()
    worker = _worker(settings, "all", f"embed-{settings.worker.space}", port)
    store = RedisStore(connect(redis_url), settings.worker.space)
    try:
        wait_for(lambda: store.count() >= len(expected) or worker.poll() is not None, 300, "every face clustered")
        time.sleep(2)  # anything beyond the expected faces would show now
        wait_for(lambda: http_get(port, "/readyz")[0] == 200, 10, "/readyz")
        status, scraped = http_get(port, "/metrics")
    finally:
        out, err = _stop(worker)
    assert worker.returncode == 0, err[-3000:]
    assert status == 200
    assert_dashboard_and_alerts_use_exported_metrics(scraped)
    for metric in (
        "facestream_frames_total",
        'facestream_stage_seconds_bucket{le="0.5",stage="detect"}',
        "facestream_faces_clustered_total",
        "facestream_redis_seconds_count",
        "facestream_batch_size_count",
    ):
        assert metric in scraped, metric

    labels = OnlineRankOrder.restore(store, 512, settings.clustering).labels()
    assert labels == expected
    assigned, view = identities_view([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
    assert set(assigned) == set(expected)
    assert set(assigned.values()) == {1}
    assert view == expected
    assert "stopped: " in out


def _accepted_faces(frames: list[Message], analyzer: FaceAnalyzer) -> set[str]:
    """Ids of the faces the analyzer accepts in these frames-topic messages."""
    expected: set[str] = set()
    for start in range(0, len(frames), 8):
        batch = frames[start : start + 8]
        images = [decode_image(message.value() or b"") for message in batch]
        for message, found in zip(batch, analyzer.analyze(images), strict=True):
            headers = FrameHeaders.from_kafka(message.headers())
            expected |= {face_id(headers.camera, headers.frame, f.index) for f in found if f.embedding is not None}
    return expected


def test_two_embed_workers_one_killed_lose_no_face(
    kafka_bootstrap: str, redis_url: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, cpu_models, partitions=4)
    sources = [FrameSource(str(data_dir("videos", name)), camera) for camera, name in VIDEOS.items()]
    produced = produce_frames(sources, settings.kafka, space=settings.worker.space, fps=0, progress=False)
    frames = read_messages(kafka_bootstrap, settings.kafka.frames_topic, idle_s=1.0)
    assert len(frames) == produced.frames
    expected = _accepted_faces(frames, analyzer)

    group = f"embed-{settings.worker.space}"
    workers = [_worker(settings, "embed", group, 0) for _ in range(2)]
    try:
        wait_for(lambda: end_offsets(kafka_bootstrap, settings.kafka.faces_topic, 1) >= 30, 180, "the first faces")
        workers[0].kill()  # SIGKILL mid-stream: the group rebalances and the survivor replays what was uncommitted
        workers[0].wait(timeout=10)
        wait_for(
            lambda: end_offsets(kafka_bootstrap, settings.kafka.faces_topic, 1) >= len(expected),
            240,
            "the surviving worker to take over every partition",
        )
        time.sleep(3)
        faces = [FaceRecord.from_json(v) for _, v in read_all(kafka_bootstrap, settings.kafka.faces_topic, 2.0)]
    finally:
        for process in workers:
            if process.poll() is None:
                _stop(process)
    assert {f.face_id for f in faces} == expected  # every frame's faces arrived, none lost

    # The cluster stage absorbs the replayed duplicates: the state holds each face once.
    cluster = ClusterWorker(settings, connect(redis_url))
    stop = threading.Event()
    thread = threading.Thread(target=cluster.run, args=(stop.is_set,), daemon=True)
    thread.start()
    wait_for(lambda: cluster.counters.faces + cluster.counters.duplicates >= len(faces), 120, "the cluster worker")
    stop.set()
    thread.join(timeout=60)
    assert cluster.counters.faces == len(expected)
    assert cluster.counters.duplicates == len(faces) - len(expected)
    assert RedisStore(connect(redis_url), settings.worker.space).count() == len(expected)


def test_a_kafka_outage_mid_stream_loses_nothing_and_assigns_each_face_once(
    redis_url: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer, tmp_path: Path
) -> None:
    folder = tmp_path / "broker"
    bootstrap = start_kafka(folder)  # a broker of this test's own, to stop and start again
    try:
        settings = _settings(bootstrap, redis_url, cpu_models)
        settings = settings.model_copy(update={"worker": settings.worker.model_copy(update={"retry_max_s": 2.0})})
        sources = [FrameSource(str(data_dir("videos", name)), camera) for camera, name in VIDEOS.items()]
        produce_frames(sources, settings.kafka, space=settings.worker.space, fps=0, progress=False)
        frames = read_messages(bootstrap, settings.kafka.frames_topic, idle_s=1.0)
        expected = _accepted_faces(frames, analyzer)

        embed = EmbedWorker(settings, analyzer, group=f"embed-{settings.worker.space}")
        cluster = ClusterWorker(settings, connect(redis_url))
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop.is_set,), daemon=True) for w in (embed, cluster)]
        for thread in threads:
            thread.start()
        store = RedisStore(connect(redis_url), settings.worker.space)
        try:
            wait_for(lambda: store.count() >= 20, 120, "the first faces clustered")
            stop_kafka(folder)
            wait_for(lambda: not embed.health.report()[0] or not cluster.health.report()[0], 60, "not-ready")
            time.sleep(5)
            start_kafka(folder)
            wait_for(lambda: store.count() >= len(expected), 240, "every face clustered after the outage")
            time.sleep(2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        assert embed.health.report()[0]
        assert cluster.health.report()[0]
        faces = [FaceRecord.from_json(v) for _, v in read_all(bootstrap, settings.kafka.faces_topic)]
        assert {f.face_id for f in faces} == expected
        assert store.count() == len(expected)
        assigned, _ = identities_view([v for _, v in read_all(bootstrap, settings.kafka.identities_topic)])
        assert set(assigned) == expected
        assert set(assigned.values()) == {1}
    finally:
        stop_kafka(folder)
