"""`facestream produce` against the project's real Kafka broker."""

import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streaming.frame_headers import FrameHeaders
from tests.conftest import data_dir
from workers.cli import main


def _topic(bootstrap: str) -> str:
    topic = f"frames-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)
    return topic


def _consume(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, bytes, FrameHeaders]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: list[tuple[bytes, bytes, FrameHeaders]] = []
    try:
        while len(out) < count:
            message = consumer.poll(10)
            assert message is not None, f"only {len(out)} of {count} frames arrived"
            if message.error():
                continue
            key, value = message.key(), message.value()
            assert key is not None
            assert value is not None
            out.append((key, value, FrameHeaders.from_kafka(message.headers())))
        assert consumer.poll(1) is None  # and no more than that
    finally:
        consumer.close()
    return out


def test_a_video_arrives_as_jpeg_frames_with_headers(kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    video = data_dir("videos", "intel_head-pose-face-detection-female.mp4")
    total = int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT))
    topic = _topic(kafka_bootstrap)
    argv = ["produce", str(video), "--bootstrap", kafka_bootstrap, "--topic", topic, "--fps", "0", "--every", "3"]
    assert main([*argv, "--space", "hq", "--camera", "door", "--no-progress"]) == 0
    expected = len(range(0, total, 3))
    assert f"produced {expected} frames" in capsys.readouterr().out
    frames = _consume(kafka_bootstrap, topic, expected)
    assert [h.frame for _, _, h in frames] == list(range(0, total, 3))
    assert {key for key, _, _ in frames} == {b"door"}
    assert {(h.camera, h.space) for _, _, h in frames} == {("door", "hq")}
    image = cv2.imdecode(np.frombuffer(frames[0][1], np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape[2] == 3
    assert all(len(value) < 1_000_000 for _, value, _ in frames)


def test_bad_files_in_a_folder_are_skipped_and_counted(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path
    ok, jpeg = cv2.imencode(".jpg", np.zeros((40, 60, 3), np.uint8))
    assert ok
    (folder / "a.jpg").write_bytes(bytes(jpeg))
    (folder / "b.jpg").write_bytes(b"")
    topic = _topic(kafka_bootstrap)
    assert main(["produce", str(folder), "--bootstrap", kafka_bootstrap, "--topic", topic, "--no-progress"]) == 0
    assert "produced 1 frames" in capsys.readouterr().out
    assert len(_consume(kafka_bootstrap, topic, 1)) == 1


def test_a_space_that_cannot_name_redis_keys_is_refused_before_anything_is_read(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    video = data_dir("videos", "intel_head-pose-face-detection-female.mp4")
    argv = ["produce", str(video), "--bootstrap", kafka_bootstrap, "--space", "hq:east", "--no-progress"]
    assert main(argv) == 2
    assert "--space 'hq:east': a space has no braces, colons or white space" in caplog.text
