"""Frames in, identities out, through the real broker and Redis: `facestream worker --role all` gives exactly
one assignment per face and the clusters `facestream run` gives on the same frames; two embed workers lose
nothing when one of them is killed."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Message

from clustering.engine import OnlineRankOrder
from clustering.redis_client import connect
from clustering.redis_store import RedisStore
from models.analyzer import FaceAnalyzer
from models.frames import CameraFrame
from models.pipeline import FacePipeline
from models.settings import ModelSettings, TrackingSettings
from streaming.decode import decode_image
from streaming.messages import FaceRecord, FrameHeaders, TrackRecord, parse_faces_topic
from streaming.produce import produce_frames
from streaming.sources import Frame, FrameSource, SourceItem
from tests.conftest import data_dir
from tests.streams import (
    appearances,
    committed_offsets,
    committed_to_end,
    end_offsets,
    identities_view,
    read_all,
    read_messages,
)
from tests.test_deploy import assert_dashboard_and_alerts_use_exported_metrics
from workers.cluster_worker import ClusterWorker
from workers.embed_worker import EmbedWorker
from workers.local_services import free_port, fresh_kafka, http_get, settings_env, start_kafka, stop_kafka, wait_for
from workers.run_job import run_pipeline
from workers.settings import Settings, WorkerSettings

VIDEOS = {
    "classroom": "intel_classroom.mp4",
    "pair": "intel_head-pose-face-detection-female-and-male.mp4",
    "walking": "intel_face-demographics-walking.mp4",
}


def _settings(bootstrap: str, redis_url: str, cpu_models: ModelSettings, partitions: int = 1) -> Settings:
    kafka = fresh_kafka(bootstrap, partitions, session_timeout_ms=6000)
    group = "cluster-" + kafka.frames_topic.removeprefix("frames-")
    # Short clips: embed a track's face every quarter second, so that clustering has work to do.
    return Settings(
        models=cpu_models,
        kafka=kafka,
        worker=WorkerSettings(cluster_group=group, redis_url=redis_url),
        tracking=TrackingSettings(embed_interval_s=0.25),
    )


def _space(settings: Settings) -> str:
    """The identity space of a test's frames: its own, like its topics."""
    return "e" + settings.kafka.frames_topic.removeprefix("frames-")


def _worker(
    settings: Settings, role: str, group: str, port: int, log: Path | None = None, **env: str
) -> subprocess.Popen[str]:
    """A `facestream worker` process; its log goes to ``log`` (to be read while it runs), or to a pipe."""
    command = [sys.executable, "-m", "workers.cli", "worker", "--role", role, "--cpu", "--group", group]
    with log.open("a") if log is not None else contextlib.nullcontext() as handle:
        return subprocess.Popen(
            command,
            env=settings_env(settings, FACESTREAM_WORKER__METRICS_PORT=str(port), **env),
            stdout=subprocess.PIPE if log is None else subprocess.DEVNULL,
            stderr=subprocess.PIPE if log is None else handle,
            text=True,
        )


def _logged_at(log: Path, text: str) -> list[float]:
    """When (seconds since the epoch) each line of ``log`` holding ``text`` was written."""
    stamps = []
    for line in log.read_text().splitlines():
        if text in line:
            stamps.append(time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000)
    return stamps


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
    produced = produce_frames(sources, settings.kafka, space=_space(settings), fps=0, progress=False)
    assert produced.failed == 0

    # `facestream run` on the very frames the workers receive (the JPEGs on the frames topic, their headers).
    frames_dir = tmp_path / "frames"
    messages = read_messages(kafka_bootstrap, settings.kafka.frames_topic, idle_s=1.0)
    for message in messages:
        headers = FrameHeaders.from_kafka(message.headers())
        camera_dir = frames_dir / headers.camera
        camera_dir.mkdir(parents=True, exist_ok=True)
        (camera_dir / f"{headers.frame:06d}.jpg").write_bytes(message.value() or b"")
    stamps = {(h.camera, h.frame): h.timestamp for h in (FrameHeaders.from_kafka(m.headers()) for m in messages)}
    summary = run_pipeline(
        [_StampedFolder(str(frames_dir / camera), camera, stamps) for camera in VIDEOS],
        tmp_path / "run",
        settings,
        analyzer=analyzer,
        progress=False,
    )
    lines = [json.loads(line) for line in (tmp_path / "run" / "faces.jsonl").read_text().splitlines()]
    expected = {line["face_id"]: line["cluster"] for line in lines if line["embedded"]}
    assert summary.frames == produced.frames
    assert len(expected) > 30

    port = free_port()
    worker = _worker(settings, "all", f"embed-{_space(settings)}", port)
    store = RedisStore(connect(redis_url), _space(settings))
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
    # One appearance per track with a clustered face, as `facestream run` reports them.
    run_appearances = [json.loads(line) for line in (tmp_path / "run" / "appearances.jsonl").read_text().splitlines()]
    published = appearances([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
    assert sorted(a.track for a in published) == sorted(
        str(a["track"]) for a in run_appearances if a["cluster"] is not None
    )
    assert "stopped: " in out


class _StampedFolder(FrameSource):
    """A folder of video frames named by number, with the timestamps their headers carried."""

    def __init__(self, uri: str, camera: str, stamps: dict[tuple[str, int], float]) -> None:
        super().__init__(uri, camera)
        self._stamps = stamps

    def __iter__(self) -> Iterator[SourceItem]:
        for item in super().__iter__():
            if isinstance(item, Frame) and item.name is not None:
                number = int(Path(item.name).stem)
                yield Frame(item.source, number, self._stamps[(item.source, number)], item.image)  # video, not photos
            else:
                yield item


def _frames_with_faces(frames: list[Message], analyzer: FaceAnalyzer, settings: Settings) -> set[tuple[str, int]]:
    """(camera, frame) of every frame in which the pipeline, uninterrupted, sees a face."""
    pipeline = FacePipeline(analyzer, settings.tracking)
    seen: set[tuple[str, int]] = set()
    for start in range(0, len(frames), 8):
        batch = [(FrameHeaders.from_kafka(m.headers()), m.value() or b"") for m in frames[start : start + 8]]
        cameras = [CameraFrame(h.camera, h.frame, h.timestamp, decode_image(v)) for h, v in batch]
        seen |= {(r.camera, r.number) for r in pipeline.process(cameras) if r.faces}
    return seen


def _covered(records: list[FaceRecord | TrackRecord]) -> set[tuple[str, int]]:
    """(camera, frame) of every frame inside an appearance: no face of those frames went unreported."""
    tracks = [r for r in records if isinstance(r, TrackRecord)]
    return {(t.camera, n) for t in tracks for n in range(t.first_frame, t.last_frame + 1)}


def test_an_embed_worker_killed_with_tracks_open_loses_no_face_and_two_others_finish(
    kafka_bootstrap: str, redis_url: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, cpu_models, partitions=4)
    sources = [FrameSource(str(data_dir("videos", name)), camera) for camera, name in VIDEOS.items()]
    produced = produce_frames(sources, settings.kafka, space=_space(settings), fps=0, progress=False)
    frames = read_messages(kafka_bootstrap, settings.kafka.frames_topic, idle_s=1.0)
    assert len(frames) == produced.frames
    with_faces = _frames_with_faces(frames, analyzer, settings)

    group = f"embed-{_space(settings)}"
    first = _worker(settings, "embed", group, 0)
    workers = [first]
    try:
        # SIGKILL right after the first commit, which a worker makes while the tracks of its frames are open.
        wait_for(
            lambda: max(committed_offsets(kafka_bootstrap, group, settings.kafka.frames_topic, 4) or [-1]) >= 0,
            180,
            "a first commit",
        )
        first.kill()
        first.wait(timeout=10)
        # Two workers share what is left: they replay from the commit, and rebalance between themselves.
        workers += [_worker(settings, "embed", group, 0) for _ in range(2)]
        wait_for(
            lambda: committed_to_end(kafka_bootstrap, group, settings.kafka.frames_topic, partitions=4),
            240,
            "the other workers to take over every partition",
        )
    finally:
        for process in workers:
            if process.poll() is None:
                _stop(process)
    records = [parse_faces_topic(v) for _, v in read_all(kafka_bootstrap, settings.kafka.faces_topic, 2.0)]
    # Every frame with a face is inside a reported appearance: the others started new tracks where the killed
    # worker's oldest open appearance began, and lost nothing.
    assert with_faces <= _covered(records)
    faces = [r for r in records if isinstance(r, FaceRecord)]
    expected = {f.face_id for f in faces}

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
    assert RedisStore(connect(redis_url), _space(settings)).count() == len(expected)


def test_a_restarted_static_member_gets_its_partitions_back_and_the_other_is_never_rebalanced(
    kafka_bootstrap: str, redis_url: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer, tmp_path: Path
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, cpu_models, partitions=4)
    group = f"embed-static-{_space(settings)}"
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}
    workers = {
        name: _worker(settings, "embed", group, 0, log, FACESTREAM_WORKER__INSTANCE_ID=f"embed-{name}")
        for name, log in logs.items()
    }
    # Live cameras: frames arrive at 12 per second for about half a minute while the workers run.
    sources = [
        FrameSource(str(data_dir("videos", name)), f"{camera}-{copy}")
        for copy in range(4)
        for camera, name in VIDEOS.items()
    ]
    producing = threading.Thread(
        target=produce_frames,
        args=(sources, settings.kafka),
        kwargs={"space": _space(settings), "fps": 12, "progress": False},
        daemon=True,
    )
    try:
        wait_for(lambda: all(_logged_at(log, "assigned") for log in logs.values()), 120, "both workers in the group")
        producing.start()
        wait_for(lambda: end_offsets(kafka_bootstrap, settings.kafka.faces_topic, 1) >= 10, 120, "the first faces")
        time.sleep(3)  # the joins' incremental rebalances are over
        killed = time.time()
        workers["a"].kill()
        workers["a"].wait(timeout=10)
        workers["a"] = _worker(settings, "embed", group, 0, logs["a"], FACESTREAM_WORKER__INSTANCE_ID="embed-a")

        def rejoined() -> bool:
            return any(t > killed for t in _logged_at(logs["a"], "assigned 2 more"))

        wait_for(rejoined, 120, "the restarted worker's partitions")
        # From joining the group to consuming again: no session timeout, no rebalance.
        joined = max(_logged_at(logs["a"], "embed stage:"))
        assert min(t for t in _logged_at(logs["a"], "assigned") if t > joined) - joined <= 10
        producing.join(timeout=120)
        wait_for(
            lambda: committed_to_end(kafka_bootstrap, group, settings.kafka.frames_topic, partitions=4),
            240,
            "every frame embedded",
        )
        finished = time.time()
    finally:
        for process in workers.values():
            if process.poll() is None:
                _stop(process)
    # The other worker kept its partitions throughout: no rebalance reached it from the kill to the end.
    changes = _logged_at(logs["b"], "assigned") + _logged_at(logs["b"], "gives up")
    assert not [t for t in changes if killed < t < finished]
    frames = read_messages(kafka_bootstrap, settings.kafka.frames_topic, idle_s=1.0)
    records = [parse_faces_topic(v) for _, v in read_all(kafka_bootstrap, settings.kafka.faces_topic, 2.0)]
    assert _frames_with_faces(frames, analyzer, settings) <= _covered(records)


def test_a_kafka_outage_mid_stream_loses_nothing_and_assigns_each_face_once(
    redis_url: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer, tmp_path: Path
) -> None:
    folder = tmp_path / "broker"
    bootstrap = start_kafka(folder)  # a broker of this test's own, to stop and start again
    try:
        settings = _settings(bootstrap, redis_url, cpu_models)
        settings = settings.model_copy(update={"worker": settings.worker.model_copy(update={"retry_max_s": 2.0})})
        sources = [FrameSource(str(data_dir("videos", name)), camera) for camera, name in VIDEOS.items()]
        produce_frames(sources, settings.kafka, space=_space(settings), fps=0, progress=False)
        frames = read_messages(bootstrap, settings.kafka.frames_topic, idle_s=1.0)
        with_faces = _frames_with_faces(frames, analyzer, settings)

        embed = EmbedWorker(settings, analyzer, group=f"embed-{_space(settings)}")
        cluster = ClusterWorker(settings, connect(redis_url))
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop.is_set,), daemon=True) for w in (embed, cluster)]
        for thread in threads:
            thread.start()
        store = RedisStore(connect(redis_url), _space(settings))
        try:
            wait_for(lambda: store.count() >= 10, 120, "the first faces clustered")
            stop_kafka(folder)
            wait_for(lambda: not embed.health.report()[0] or not cluster.health.report()[0], 60, "not-ready")
            time.sleep(5)
            start_kafka(folder)
            wait_for(
                lambda: committed_to_end(bootstrap, f"embed-{_space(settings)}", settings.kafka.frames_topic, 1),
                240,
                "every frame embedded after the outage",
            )
            # Once the cameras go quiet, their open tracks report their appearances.
            records: list[FaceRecord | TrackRecord] = []

            def covered() -> bool:
                records[:] = [parse_faces_topic(v) for _, v in read_all(bootstrap, settings.kafka.faces_topic)]
                return with_faces <= _covered(records)

            wait_for(covered, 30, "the appearances of every track")
            expected = {r.face_id for r in records if isinstance(r, FaceRecord)}
            wait_for(lambda: store.count() >= len(expected), 120, "every face clustered after the outage")
            # Every assignment committed, and both stages ready again (a cluster worker whose transaction hung on
            # the restarted coordinator steps down after its 35 s deadline and takes over again first).
            identities = settings.kafka.identities_topic
            wait_for(
                lambda: (
                    set(identities_view([v for _, v in read_all(bootstrap, identities, idle_s=1.0)])[0]) == expected
                ),
                180,
                "every assignment committed",
            )
            # Every faces record committed by the cluster stage too (track records come after the faces): no
            # batch is left in flight to hang on the restarted coordinator after the readiness check.
            faces_topic, cluster_group = settings.kafka.faces_topic, settings.worker.cluster_group
            wait_for(lambda: committed_to_end(bootstrap, cluster_group, faces_topic, 1), 180, "the faces committed")
            wait_for(lambda: embed.health.report()[0] and cluster.health.report()[0], 120, "both stages ready")
            time.sleep(2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        assert embed.health.report()[0]
        assert cluster.health.report()[0]
        assert with_faces <= _covered(records)
        assert store.count() == len(expected)
        assigned, _ = identities_view([v for _, v in read_all(bootstrap, settings.kafka.identities_topic)])
        assert set(assigned) == expected
        assert set(assigned.values()) == {1}
    finally:
        stop_kafka(folder)
