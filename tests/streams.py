"""Helpers of the tests that run workers against the real broker and Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from numpy.typing import NDArray

from clustering.engine import OnlineRankOrder
from clustering.settings import ClusteringSettings
from streaming.commands import ForgottenEvent, MergedEvent, SplitEvent
from streaming.kafka_io import TRANSIENT_ERRORS
from streaming.messages import AppearanceEvent, Assignment, FaceQuality, FaceRecord, MergeEvent
from workers.plumbing.faces import apply_face
from workers.plumbing.service import Stage


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


def synthetic_face(
    space: str, camera: str, frame: int, vector: NDArray[np.floating], *, index: int = 0, timestamp: float | None = None
) -> FaceRecord:
    """A face record of ``vector`` (scaled to unit length) seen by ``camera`` at ``frame``, well placed and sharp."""
    unit = (vector / np.linalg.norm(vector)).astype(np.float32)
    return FaceRecord(
        face_id=f"{camera}:{frame}:{index}",
        space=space,
        camera=camera,
        frame=frame,
        timestamp=float(frame) if timestamp is None else timestamp,
        box=(0.0, 0.0, 50.0, 50.0),
        landmarks=[(10.0, 10.0)] * 5,
        score=0.9,
        quality=FaceQuality(face_size=50.0, sharpness=20.0, yaw=0.5),
        model="synthetic",
        embedding=FaceRecord.encode_embedding(unit),
        dimension=len(unit),
    )


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
        records.append(synthetic_face(space, f"cam{frame % 3}", frame, vector, index=index, timestamp=frame / 10))
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
        if b'"type":"merge"' in value or b'"type":"merged"' in value:
            merge = MergeEvent.from_json(value) if b'"type":"merge"' in value else MergedEvent.from_json(value)
            for absorbed in merge.absorbed:
                absorbed_into[absorbed] = merge.survivor
        elif b'"type":"split"' in value or b'"type":"forgotten"' in value:
            event = SplitEvent.from_json(value) if b'"type":"split"' in value else ForgottenEvent.from_json(value)
            for part in event.parts:
                absorbed_into.pop(part.cluster, None)  # a part is a cluster of its own again
                cluster_of.update(dict.fromkeys(part.faces, part.cluster))
            for face in getattr(event, "faces", []):  # a tombstone: the face is erased
                cluster_of.pop(face, None)
                assigned.pop(face, None)
        elif b'"type":"appearance"' in value:
            AppearanceEvent.from_json(value)
        elif b'"type":"labelled"' in value or b'"type":"conflict"' in value:
            continue
        else:
            assignment = Assignment.from_json(value)
            assigned[assignment.face_id] += 1
            cluster_of[assignment.face_id] = assignment.cluster

    def root(cluster: int) -> int:
        while cluster in absorbed_into:
            cluster = absorbed_into[cluster]
        return cluster

    return assigned, {face: root(cluster) for face, cluster in cluster_of.items()}


@contextmanager
def running(*stages: Stage) -> Iterator[None]:
    """Runs the stages in threads for the block, then stops them as `facestream worker` does (stop flag)."""
    stop = threading.Event()
    threads = [threading.Thread(target=stage.run, args=(stop.is_set,), daemon=True) for stage in stages]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


def redis_traces(client: Any, space: str) -> bytes:
    """Every key, field and value of an identity space in Redis, as one blob to search for what must be gone."""
    blob = []
    for key in client.scan_iter(match=f"{{fs:{space}}}:*"):
        blob.append(key)
        kind = client.type(key)
        if kind == b"hash":
            for field, value in client.hgetall(key).items():
                blob += [field, value]
        elif kind == b"list":
            blob += client.lrange(key, 0, -1)
        elif kind == b"string":
            blob.append(client.get(key) or b"")
    return b"\n".join(blob)
