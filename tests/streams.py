"""Helpers of the tests that run workers against the real broker and Redis."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from clustering.engine import OnlineRankOrder
from clustering.settings import ClusteringSettings
from streaming.kafka_io import TRANSIENT_ERRORS
from streaming.messages import AppearanceEvent, Assignment, FaceQuality, FaceRecord, MergeEvent
from streaming.settings import KafkaSettings
from workers.faces import apply_face
from workers.settings import Settings


def create_topics(bootstrap: str, names: list[str], partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)


def read_all(
    bootstrap: str, topic: str, idle_s: float = 3.0, client: dict[str, Any] | None = None
) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of every committed message of ``topic`` (read_committed), until none came for ``idle_s``.
    ``client``: more librdkafka settings (security)."""
    messages = read_messages(bootstrap, topic, idle_s, client)
    return [(message.key(), message.value() or b"") for message in messages]


def read_messages(
    bootstrap: str, topic: str, idle_s: float = 3.0, client: dict[str, Any] | None = None
) -> list[Message]:
    """Every committed message of ``topic`` (read_committed), until none came for ``idle_s``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **(client or {}),
        }
    )
    assigned: list[bool] = []
    consumer.subscribe([topic], on_assign=lambda _c, _p: assigned.append(True))
    out: list[Message] = []
    last = time.monotonic()
    deadline = last + 120
    try:
        # The idle clock starts once the group gave this consumer its partitions (joining takes seconds).
        while not assigned or time.monotonic() - last < idle_s:
            message = consumer.poll(0.5)
            if not assigned:
                assert time.monotonic() < deadline, f"no partition of {topic} was assigned in 120 s"
                last = time.monotonic()
            if message is None or message.error():
                continue
            out.append(message)
            last = time.monotonic()
    finally:
        consumer.close()
    return out


def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    """Messages written to ``topic`` so far, over all its partitions."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        consumer.close()


#: Answers of a broker that restarted and has not loaded the group yet, or is not reachable yet.
_NOT_YET = TRANSIENT_ERRORS | {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int] | None:
    """The offsets ``group`` committed on each partition (negative: none yet); None while the broker cannot tell."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    except KafkaException as exc:
        # A broker just restarted answers NOT_COORDINATOR and the like until it has loaded the group.
        if exc.args[0].code() in _NOT_YET:
            return None
        raise
    finally:
        consumer.close()
    return [tp.offset for tp in found]


def committed_to_end(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    """Whether ``group`` committed every partition to its end; False while the broker cannot tell yet."""
    found = committed_offsets(bootstrap, group, topic, partitions)
    if found is None:
        return False
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        consumer.close()
    return [max(offset, 0) for offset in found] == ends


def synthetic_faces(
    count: int, identities: int, *, space: str, seed: int = 0, dimension: int = 512
) -> list[FaceRecord]:
    """Unit vectors around random identity centres (cosine ~0.6 within an identity), two faces a frame."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, dimension))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, identities + 1)
    people = rng.choice(identities, size=count, p=weights / weights.sum())
    noise = rng.normal(size=(count, dimension)) * (0.8 / np.sqrt(dimension))
    vectors = centres[people] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = []
    for i, vector in enumerate(vectors.astype(np.float32)):
        frame, index = divmod(i, 2)
        records.append(
            FaceRecord(
                face_id=f"cam{frame % 3}:{frame}:{index}",
                space=space,
                camera=f"cam{frame % 3}",
                frame=frame,
                timestamp=float(frame) / 10,
                box=(0.0, 0.0, 50.0, 50.0),
                landmarks=[(10.0, 10.0)] * 5,
                score=0.9,
                quality=FaceQuality(face_size=50.0, sharpness=20.0, yaw=0.5),
                model="synthetic",
                embedding=FaceRecord.encode_embedding(vector),
                dimension=dimension,
            )
        )
    return records


def reference_labels(records: list[FaceRecord], settings: ClusteringSettings) -> dict[str, int]:
    """What an uninterrupted in-memory run gives for ``records`` in this order."""
    engine = OnlineRankOrder(records[0].dimension, settings)
    for record in records:
        apply_face(engine, record, record.vector())
    return engine.labels()


def appearances(values: list[bytes]) -> list[AppearanceEvent]:
    return [AppearanceEvent.from_json(v) for v in values if b'"type":"appearance"' in v]


def identities_view(values: list[bytes]) -> tuple[Counter[str], dict[str, int]]:
    """(assignments per face, face -> cluster) as a consumer of the identities topic rebuilds them."""
    assigned: Counter[str] = Counter()
    cluster_of: dict[str, int] = {}
    absorbed_into: dict[int, int] = {}
    for value in values:
        if b'"type":"merge"' in value:
            merge = MergeEvent.from_json(value)
            for absorbed in merge.absorbed:
                absorbed_into[absorbed] = merge.survivor
        elif b'"type":"appearance"' in value:
            AppearanceEvent.from_json(value)
        else:
            assignment = Assignment.from_json(value)
            assigned[assignment.face_id] += 1
            cluster_of[assignment.face_id] = assignment.cluster

    def root(cluster: int) -> int:
        while cluster in absorbed_into:
            cluster = absorbed_into[cluster]
        return cluster

    return assigned, {face: root(cluster) for face, cluster in cluster_of.items()}


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of GET http://127.0.0.1:port/path, error statuses included; 0 when refused."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError as exc:
        return 0, str(exc.reason)  # nothing listens there (yet)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def fresh_kafka(
    bootstrap: str, frames_partitions: int = 1, faces_partitions: int = 1, **overrides: Any
) -> KafkaSettings:
    """Kafka settings naming topics of their own (uuid suffixes), created on the broker."""
    suffix = uuid.uuid4().hex[:10]
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap,
        frames_topic=f"frames-{suffix}",
        faces_topic=f"faces-{suffix}",
        identities_topic=f"ids-{suffix}",
        dead_letter_topic=f"dead-{suffix}",
        **overrides,
    )
    create_topics(bootstrap, [kafka.frames_topic], frames_partitions)
    create_topics(bootstrap, [kafka.faces_topic], faces_partitions)
    create_topics(bootstrap, [kafka.identities_topic, kafka.dead_letter_topic])
    return kafka


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a `facestream worker` process the Kafka, worker and tracking settings."""
    env = dict(os.environ)
    groups = (
        ("KAFKA", settings.kafka.model_dump()),
        ("WORKER", settings.worker.model_dump()),
        ("TRACKING", settings.tracking.model_dump()),
    )
    for group, values in groups:
        env |= {
            f"FACESTREAM_{group}__{name.upper()}": str(v)
            for name, v in values.items()
            if v is not None and not isinstance(v, dict)
        }
    env["FACESTREAM_MODELS__RUNTIME__CACHE_DIR"] = str(settings.models.runtime.cache_dir)
    return env | extra
