"""Faults mid-stream, through the real broker and Redis: an embed worker killed with tracks open, a static
member restarted, a Kafka outage; nothing is lost and each face is assigned once."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_store import RedisStore
from models.analyzer import FaceAnalyzer
from models.settings import ModelSettings
from streaming.messages import FaceRecord, TrackRecord, parse_faces_topic
from streaming.produce import produce_sources
from streaming.read_policy import ReadPolicy
from streaming.sources import FrameSource
from tests.conftest import data_dir
from tests.local_services import start_kafka, stop_kafka, wait_for
from tests.streams import (
    committed_offsets,
    committed_to_end,
    end_offsets,
    identities_view,
    read_all,
    read_messages,
)
from tests.worker_processes import (
    VIDEOS,
    frames_covered,
    frames_with_faces,
    logged_at,
    settings_for,
    space_of,
    stop_process,
    worker_process,
)
from workers.cluster.cluster_worker import ClusterWorker
from workers.embed.embed_worker import EmbedWorker


def test_an_embed_worker_killed_with_tracks_open_loses_no_face_and_two_others_finish(
    kafka_bootstrap: str, redis_url: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    settings = settings_for(kafka_bootstrap, redis_url, cpu_models, partitions=4)
    sources = [FrameSource(str(data_dir("videos", name)), camera) for camera, name in VIDEOS.items()]
    produced = produce_sources(sources, settings.kafka, space=space_of(settings))
    frames = read_messages(kafka_bootstrap, settings.kafka.frames_topic, idle_s=1.0)
    assert len(frames) == produced.frames
    with_faces = frames_with_faces(frames, analyzer, settings)

    group = f"embed-{space_of(settings)}"
    first = worker_process(settings, "embed", group, 0)
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
        workers += [worker_process(settings, "embed", group, 0) for _ in range(2)]
        wait_for(
            lambda: committed_to_end(kafka_bootstrap, group, settings.kafka.frames_topic, partitions=4),
            240,
            "the other workers to take over every partition",
        )
    finally:
        for process in workers:
            if process.poll() is None:
                stop_process(process)
    records = [parse_faces_topic(v) for _, v in read_all(kafka_bootstrap, settings.kafka.faces_topic, 2.0)]
    # Every frame with a face is inside a reported appearance: the others started new tracks where the killed
    # worker's oldest open appearance began, and lost nothing.
    assert with_faces <= frames_covered(records)
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
    assert RedisStore(connect(redis_url), space_of(settings)).count() == len(expected)


def test_a_restarted_static_member_gets_its_partitions_back_and_the_other_is_never_rebalanced(
    kafka_bootstrap: str, redis_url: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer, tmp_path: Path
) -> None:
    # The session timeout a static member is given to come back: a restart on a busy 2-core machine (Python,
    # onnxruntime, the models) takes longer than the 6 s the other tests use to move a dead worker's partitions.
    settings = settings_for(kafka_bootstrap, redis_url, cpu_models, partitions=4, session_timeout_ms=30_000)
    group = f"embed-static-{space_of(settings)}"
    logs = {name: tmp_path / f"{name}.log" for name in ("a", "b")}

    def start(name: str) -> subprocess.Popen[str]:
        return worker_process(settings, "embed", group, 0, logs[name], FACESTREAM_WORKER__INSTANCE_ID=f"embed-{name}")

    workers = {"b": start("b")}
    # Live cameras: frames arrive at 12 per second for about half a minute while the workers run.
    sources = [
        FrameSource(str(data_dir("videos", name)), f"{camera}-{copy}")
        for copy in range(4)
        for camera, name in VIDEOS.items()
    ]
    producing = threading.Thread(
        target=produce_sources,
        args=(sources, settings.kafka),
        kwargs={"space": space_of(settings), "policy": ReadPolicy(pace=12)},
        daemon=True,
    )
    try:
        wait_for(lambda: bool(logged_at(logs["b"], "assigned")), 120, "the group's first member")
        workers["a"] = start("a")
        wait_for(lambda: bool(logged_at(logs["a"], "assigned 2 more")), 120, "the second member's share")
        producing.start()
        wait_for(lambda: end_offsets(kafka_bootstrap, settings.kafka.faces_topic, 1) >= 10, 120, "the first faces")
        time.sleep(3)  # the joins' incremental rebalances are over
        killed = time.time()
        workers["a"].kill()
        workers["a"].wait(timeout=10)
        workers["a"] = start("a")

        def rejoined() -> bool:
            return any(t > killed for t in logged_at(logs["a"], "assigned 2 more"))

        wait_for(rejoined, 120, "the restarted worker's partitions")
        # From joining the group to consuming again: no session timeout, no rebalance.
        joined = max(logged_at(logs["a"], "embed stage:"))
        assert min(t for t in logged_at(logs["a"], "assigned") if t > joined) - joined <= 10
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
                stop_process(process)
    # The other worker kept its partitions throughout: no rebalance reached it from the kill to the end.
    changes = logged_at(logs["b"], "assigned") + logged_at(logs["b"], "gives up")
    assert not [t for t in changes if killed < t < finished]
    frames = read_messages(kafka_bootstrap, settings.kafka.frames_topic, idle_s=1.0)
    records = [parse_faces_topic(v) for _, v in read_all(kafka_bootstrap, settings.kafka.faces_topic, 2.0)]
    assert frames_with_faces(frames, analyzer, settings) <= frames_covered(records)


def test_a_kafka_outage_mid_stream_loses_nothing_and_assigns_each_face_once(
    redis_url: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer, tmp_path: Path
) -> None:
    folder = tmp_path / "broker"
    bootstrap = start_kafka(folder)  # a broker of this test's own, to stop and start again
    try:
        settings = settings_for(bootstrap, redis_url, cpu_models)
        settings = settings.model_copy(update={"worker": settings.worker.model_copy(update={"retry_max_s": 2.0})})
        sources = [FrameSource(str(data_dir("videos", name)), camera) for camera, name in VIDEOS.items()]
        produce_sources(sources, settings.kafka, space=space_of(settings))
        frames = read_messages(bootstrap, settings.kafka.frames_topic, idle_s=1.0)
        with_faces = frames_with_faces(frames, analyzer, settings)

        embed = EmbedWorker(settings, analyzer, group=f"embed-{space_of(settings)}")
        cluster = ClusterWorker(settings, connect(redis_url))
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop.is_set,), daemon=True) for w in (embed, cluster)]
        for thread in threads:
            thread.start()
        store = RedisStore(connect(redis_url), space_of(settings))
        try:
            wait_for(lambda: store.count() >= 10, 120, "the first faces clustered")
            stop_kafka(folder)
            wait_for(lambda: not embed.health.report()[0] or not cluster.health.report()[0], 60, "not-ready")
            time.sleep(5)
            start_kafka(folder)
            wait_for(
                lambda: committed_to_end(bootstrap, f"embed-{space_of(settings)}", settings.kafka.frames_topic, 1),
                240,
                "every frame embedded after the outage",
            )
            # Once the cameras go quiet, their open tracks report their appearances.
            records: list[FaceRecord | TrackRecord] = []

            def covered() -> bool:
                records[:] = [parse_faces_topic(v) for _, v in read_all(bootstrap, settings.kafka.faces_topic)]
                return with_faces <= frames_covered(records)

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
        assert with_faces <= frames_covered(records)
        assert store.count() == len(expected)
        assigned, _ = identities_view([v for _, v in read_all(bootstrap, settings.kafka.identities_topic)])
        assert set(assigned) == expected
        assert set(assigned.values()) == {1}
    finally:
        stop_kafka(folder)
