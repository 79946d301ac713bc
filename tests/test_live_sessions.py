"""Sessions on the real broker and Redis: a producer restarted under the same camera id, another video under
a reused id, and a broker outage under a streaming camera: nothing lost, nothing counted twice, nobody joined
through a track of an earlier session."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from clustering.redis_state.redis_client import connect
from models.analyzer import FaceAnalyzer
from models.settings import ModelSettings
from streaming.frame_headers import FrameHeaders
from streaming.messages import FaceRecord, parse_faces_topic
from streaming.produce import ProduceSummary, produce_frames, produce_sources
from streaming.read_policy import ReadPolicy
from streaming.readers import Readers
from streaming.sources import FrameSource
from tests.conftest import data_dir
from tests.live_servers import Behaviour, MjpegServer
from tests.local_services import fresh_kafka, start_kafka, stop_kafka, wait_for
from tests.streams import identities_view, read_all, read_messages, running
from tests.worker_processes import settings_for, space_of
from workers.cluster.cluster_worker import ClusterWorker
from workers.embed.embed_worker import EmbedWorker


def test_a_restarted_producer_and_a_reused_camera_id_cluster_every_face(
    kafka_bootstrap: str, redis_url: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    """The same clip produced twice under one camera id (a restart: frames numbered from 0 again), then
    another person's clip under that id: every face of every session is clustered, none is taken for a repeat,
    and the other person joins nobody through a track id of an earlier session."""
    settings = settings_for(kafka_bootstrap, redis_url, cpu_models)
    space = space_of(settings)
    same = data_dir("videos", "intel_head-pose-face-detection-male.mp4")
    other = data_dir("videos", "intel_head-pose-face-detection-female.mp4")
    for video in (same, same, other):
        assert produce_sources([FrameSource(str(video), "door")], settings.kafka, space=space).failed == 0
    frames = read_messages(kafka_bootstrap, settings.kafka.frames_topic, 1.0)
    sessions = [FrameHeaders.from_kafka(m.headers()).session for m in frames]
    assert len(set(sessions)) == 3

    embed = EmbedWorker(settings, analyzer, group=f"embed-{space}")
    cluster = ClusterWorker(settings, connect(redis_url))
    faces: list[FaceRecord] = []
    view: dict[str, int] = {}

    def every_face_assigned() -> bool:
        records = [parse_faces_topic(v) for _, v in read_all(kafka_bootstrap, settings.kafka.faces_topic, 1.0)]
        faces[:] = [r for r in records if isinstance(r, FaceRecord) and r.embedding]
        assigned, view_now = identities_view(
            [v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic, 1.0)]
        )
        view.clear()
        view.update(view_now)
        return len(faces) > 0 and set(assigned) == {f.face_id for f in faces}

    with running(embed, cluster):
        wait_for(lambda: embed.pipeline.counters.frames == len(sessions), 180, "every frame analysed")
        wait_for(every_face_assigned, 120, "every face assigned")
    by_session: dict[str, list[FaceRecord]] = {}
    for face in faces:
        by_session.setdefault(face.face_id.split(":")[0], []).append(face)
    first, second, third = [by_session[f"door@{session}"] for session in dict.fromkeys(sessions)]
    assert len(first) == len(second) > 0, "the restarted producer's faces are all clustered, none a repeat"
    assert len(third) > 0
    assert cluster.counters.duplicates == 0
    for face in faces:
        assert face.track is not None
        assert face.track.startswith(face.face_id.split(":")[0] + ":"), "a track stays in its session"
    men = {view[f.face_id] for f in first + second}
    woman = {view[f.face_id] for f in third}
    assert not men & woman, "the other person joined nobody through a track of an earlier session"


def test_a_broker_outage_loses_no_live_frame_and_repeats_none(
    server: MjpegServer, clip: list[bytes], tmp_path: Path
) -> None:
    """The broker stops for a few seconds while a camera streams: the frames read meanwhile wait in the
    producer and arrive once the broker is back, each once and in order."""
    server.paths["gate"] = Behaviour(clip, fps=10)
    folder = tmp_path / "broker"
    bootstrap = start_kafka(folder)  # a broker of this test's own, to stop and start again
    try:
        kafka = fresh_kafka(bootstrap)
        readers = Readers([(FrameSource(server.url("gate"), "gate"), ReadPolicy(jpeg=True))]).start()
        stop = threading.Event()
        summaries: list[ProduceSummary] = []
        thread = threading.Thread(
            target=lambda: summaries.append(produce_frames(readers, {"gate": "s"}, kafka, should_stop=stop.is_set))
        )
        thread.start()
        time.sleep(2.0)
        stop_kafka(folder)
        time.sleep(4.0)
        start_kafka(folder)
        time.sleep(3.0)
        stop.set()
        thread.join(60)
        (summary,) = summaries
        numbers = [FrameHeaders.from_kafka(m.headers()).frame for m in read_messages(bootstrap, kafka.frames_topic)]
    finally:
        stop_kafka(folder)
    assert summary.failed == 0
    assert summary.dropped_stale == 0
    assert len(numbers) == summary.frames >= 80
    assert numbers == list(range(len(numbers))), "every frame once, in order, across the outage"
