"""The embed worker on the real broker: faces out for every good frame, a dead letter for every bad one,
offsets committed only after the outputs are acknowledged."""

import base64
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import Producer

from models.analyzer import FaceAnalyzer
from models.frames import CameraFrame
from models.pipeline import FacePipeline
from models.registry import sample_images
from models.settings import ModelSettings, TrackingSettings
from streaming.frame_headers import FrameHeaders
from streaming.messages import DeadLetter, FaceRecord, TrackRecord, parse_faces_topic
from streaming.produce import produce_sources
from streaming.read_policy import ReadPolicy
from streaming.sources import Frame, FrameSource
from tests.conftest import data_dir
from tests.images import jpeg_bytes, png_header
from tests.local_services import create_topics, fresh_kafka
from tests.streams import committed_to_end, read_all
from workers.embed.embed_worker import EmbedWorker
from workers.plumbing.encoded_picture import EncodedPicture
from workers.settings import Settings


def test_frames_become_faces_and_bad_messages_dead_letters(
    kafka_bootstrap: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    kafka = fresh_kafka(kafka_bootstrap, frames_partitions=2)
    suffix = kafka.frames_topic.removeprefix("frames-")

    video = data_dir("videos", "intel_face-demographics-walking-and-pause.mp4")
    produced = produce_sources([FrameSource(str(video), "door")], kafka, policy=ReadPolicy(every=4))
    assert produced.failed == 0
    good = FrameHeaders(camera="door", frame=100000, timestamp=1.0).to_kafka()
    bad_messages: dict[str, tuple[bytes, list[tuple[str, str | bytes | None]]]] = {
        "corrupt": (jpeg_bytes()[:300], good),
        "empty": (b"", good),
        "not_image": (b'{"hello": "world"}', good),
        "too_large": (png_header(30000, 30000), good),
        "missing_header": (b"\xff\xd8", [("camera", b"door")]),
        "malformed_header": (b"\xff\xd8", [(n, b"x" if n == "frame" else v) for n, v in good]),
        "unknown_version": (b"\xff\xd8", [(n, b"9" if n == "version" else v) for n, v in good]),
    }
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for value, headers in bad_messages.values():
        producer.produce(kafka.frames_topic, key=b"door", value=value, headers=headers)
    assert producer.flush(30) == 0
    total = produced.frames + len(bad_messages)

    worker = EmbedWorker(Settings(models=cpu_models, kafka=kafka), analyzer, group=f"embed-{suffix}")
    done = threading.Event()

    def finished() -> bool:
        seen = worker.pipeline.counters.frames + sum(worker.dead_letters.values())
        return done.is_set() or seen >= total

    thread = threading.Thread(target=worker.run, args=(finished,), daemon=True)
    thread.start()
    thread.join(timeout=180)
    done.set()
    thread.join(timeout=30)
    assert not thread.is_alive()

    # Every good frame was analysed; the faces the pipeline embeds are on the faces topic, each exactly once,
    # followed by the appearance of each track.
    frames = read_all(kafka_bootstrap, kafka.frames_topic)
    pictures = [EncodedPicture(v) for _, v in frames if len(v) > 2000]
    kept = [f for f in FrameSource(str(video), "door") if isinstance(f, Frame) and f.number % 4 == 0]
    pipeline = FacePipeline(analyzer, TrackingSettings())
    results = pipeline.process(
        [CameraFrame("door", f.number, f.timestamp, picture) for f, picture in zip(kept, pictures, strict=True)]
    )
    expected = sum(f.embedding is not None for result in results for f in result.faces)
    records = [parse_faces_topic(v) for _, v in read_all(kafka_bootstrap, kafka.faces_topic)]
    faces = [r for r in records if isinstance(r, FaceRecord)]
    assert len(faces) == expected == worker.pipeline.counters.embedded > 0
    assert all(f.track is not None for f in faces)
    tracks = [r for r in records if isinstance(r, TrackRecord)]
    assert {t.track for t in tracks} <= {f.track for f in faces} | {t.track for t in tracks}
    assert len({f.face_id for f in faces}) == len(faces)
    assert all(f.vector(512).shape == (512,) for f in faces)
    assert abs(float(np.linalg.norm(faces[0].vector()))) - 1 < 1e-4
    # Each embedded face carries its aligned face, for whatever shows faces downstream.
    for face in faces:
        assert face.thumbnail is not None
        shown = cv2.imdecode(np.frombuffer(base64.b64decode(face.thumbnail), np.uint8), cv2.IMREAD_COLOR)
        assert shown is not None
        assert shown.shape == (112, 112, 3)

    letters = [DeadLetter.from_json(v) for _, v in read_all(kafka_bootstrap, kafka.dead_letter_topic)]
    assert sorted(letter.reason for letter in letters) == sorted(bad_messages)
    for letter in letters:
        assert letter.stage == "embed"
        assert letter.topic == kafka.frames_topic
        original = bad_messages[letter.reason][0]
        assert letter.value == DeadLetter.b64(original)  # nothing lost: the original bytes can be replayed

    # Offsets were committed up to the end of every partition.
    assert committed_to_end(kafka_bootstrap, f"embed-{suffix}", kafka.frames_topic, partitions=2)


def test_the_worker_command_stops_cleanly_on_sigterm(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:10]
    env = {
        **os.environ,
        "FACESTREAM_KAFKA__FRAMES_TOPIC": f"frames-{suffix}",
        "FACESTREAM_KAFKA__FACES_TOPIC": f"faces-{suffix}",
        "FACESTREAM_KAFKA__DEAD_LETTER_TOPIC": f"dead-{suffix}",
        "FACESTREAM_MODELS__RUNTIME__CACHE_DIR": str(tmp_path / "cache"),
    }
    names = (
        env["FACESTREAM_KAFKA__FRAMES_TOPIC"],
        env["FACESTREAM_KAFKA__FACES_TOPIC"],
        env["FACESTREAM_KAFKA__DEAD_LETTER_TOPIC"],
    )
    create_topics(kafka_bootstrap, list(names))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    headers = FrameHeaders(camera="lobby", frame=0, timestamp=1.0).to_kafka()
    producer.produce(names[0], key=b"lobby", value=sample_images()[0].read_bytes(), headers=headers)
    assert producer.flush(30) == 0

    command = [
        sys.executable,
        "-m",
        "workers.cli",
        "worker",
        "--bootstrap",
        kafka_bootstrap,
        "--cpu",
        "--group",
        suffix,
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        faces: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + 90
        while not faces and time.monotonic() < deadline and process.poll() is None:
            faces = read_all(kafka_bootstrap, names[1], idle_s=1.0)
        assert faces, "no faces within 90 s" if process.poll() is None else process.communicate()[1]
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert stdout.startswith("stopped: 1 frames (1 detected),")
