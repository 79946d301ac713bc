"""The embed worker on the real broker: faces out for every good frame, a dead letter for every bad one,
offsets committed only after the outputs are acknowledged."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from models.analyzer import FaceAnalyzer
from models.registry import sample_images
from models.settings import ModelSettings
from streaming.decode import decode_image
from streaming.messages import DeadLetter, FaceRecord, FrameHeaders
from streaming.produce import produce_frames
from streaming.settings import KafkaSettings
from streaming.sources import FrameSource
from tests.conftest import data_dir
from tests.test_bad_input import _jpeg, _png_header
from workers.embed_worker import EmbedWorker
from workers.settings import Settings


def _read_all(bootstrap: str, topic: str, idle_s: float = 3.0) -> list[tuple[bytes | None, bytes]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, bytes]] = []
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            value = message.value()
            assert value is not None
            out.append((message.key(), value))
            last = time.monotonic()
    finally:
        consumer.close()
    return out


def test_frames_become_faces_and_bad_messages_dead_letters(
    kafka_bootstrap: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    suffix = uuid.uuid4().hex[:10]
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        frames_topic=f"frames-{suffix}",
        faces_topic=f"faces-{suffix}",
        dead_letter_topic=f"dead-{suffix}",
    )
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = [
        NewTopic(t, num_partitions=2, replication_factor=1)
        for t in (kafka.frames_topic, kafka.faces_topic, kafka.dead_letter_topic)
    ]
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)

    video = data_dir("videos", "intel_face-demographics-walking-and-pause.mp4")
    produced = produce_frames([FrameSource(str(video), "door")], kafka, fps=0, every=4, progress=False)
    assert produced.failed == 0
    good = FrameHeaders(camera="door", frame=100000, timestamp=1.0).to_kafka()
    bad_messages: dict[str, tuple[bytes, list[tuple[str, str | bytes | None]]]] = {
        "corrupt": (_jpeg()[:300], good),
        "empty": (b"", good),
        "not_image": (b'{"hello": "world"}', good),
        "too_large": (_png_header(30000, 30000), good),
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
        seen = worker.counters.frames + sum(worker.counters.dead_letters.values())
        return done.is_set() or seen >= total

    thread = threading.Thread(target=worker.run, args=(finished,), daemon=True)
    thread.start()
    thread.join(timeout=180)
    done.set()
    thread.join(timeout=30)
    assert not thread.is_alive()

    # Every good frame was analysed; its accepted faces are on the faces topic, each exactly once.
    frames = _read_all(kafka_bootstrap, kafka.frames_topic)
    images = [decode_image(v) for _, v in frames if len(v) > 2000]
    expected = sum(f.embedding is not None for faces in analyzer.analyze(images) for f in faces)
    faces = [FaceRecord.from_json(v) for _, v in _read_all(kafka_bootstrap, kafka.faces_topic)]
    assert len(faces) == expected == worker.counters.faces > 0
    assert len({f.face_id for f in faces}) == len(faces)
    assert all(f.vector(512).shape == (512,) for f in faces)
    assert abs(float(np.linalg.norm(faces[0].vector()))) - 1 < 1e-4

    letters = [DeadLetter.from_json(v) for _, v in _read_all(kafka_bootstrap, kafka.dead_letter_topic)]
    assert sorted(letter.reason for letter in letters) == sorted(bad_messages)
    for letter in letters:
        assert letter.stage == "embed"
        assert letter.topic == kafka.frames_topic
        original = bad_messages[letter.reason][0]
        assert letter.value == DeadLetter.b64(original)  # nothing lost: the original bytes can be replayed

    # Offsets were committed up to the end of every partition.
    check = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"embed-{suffix}"})
    try:
        committed = check.committed([TopicPartition(kafka.frames_topic, p) for p in (0, 1)], timeout=10)
        ends = [check.get_watermark_offsets(TopicPartition(kafka.frames_topic, p), timeout=10)[1] for p in (0, 1)]
    finally:
        check.close()
    assert [max(tp.offset, 0) for tp in committed] == ends


def test_the_worker_command_stops_cleanly_on_sigterm(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:10]
    env = {
        **os.environ,
        "FACESTREAM_KAFKA__FRAMES_TOPIC": f"frames-{suffix}",
        "FACESTREAM_KAFKA__FACES_TOPIC": f"faces-{suffix}",
        "FACESTREAM_KAFKA__DEAD_LETTER_TOPIC": f"dead-{suffix}",
        "FACESTREAM_MODELS__RUNTIME__CACHE_DIR": str(tmp_path / "cache"),
    }
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    names = (
        env["FACESTREAM_KAFKA__FRAMES_TOPIC"],
        env["FACESTREAM_KAFKA__FACES_TOPIC"],
        env["FACESTREAM_KAFKA__DEAD_LETTER_TOPIC"],
    )
    for future in admin.create_topics([NewTopic(t, num_partitions=1, replication_factor=1) for t in names]).values():
        future.result(timeout=30)
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
            faces = _read_all(kafka_bootstrap, names[1], idle_s=1.0)
        assert faces, "no faces within 90 s" if process.poll() is None else process.communicate()[1]
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert stdout.startswith("stopped: 1 frames,")
