"""No record can stop a stage, on the real broker and Redis: records at the broker's size limit become dead
letters that fit it, events of huge corrections are cut into pieces that fit, and the valid records behind
them are served."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections import Counter

import numpy as np
from confluent_kafka import Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # documented, but not re-exported for mypy
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from clustering.redis_state.redis_client import connect
from models.analyzer import FaceAnalyzer
from models.registry import sample_images
from models.settings import ModelSettings
from streaming.commands import ForgottenEvent, SplitEvent
from streaming.frame_headers import FrameHeaders
from streaming.messages import DeadLetter, FaceRecord, parse_faces_topic
from tests.local_services import create_topics, fresh_kafka, wait_for
from tests.streams import identities_view, read_all, running, synthetic_face, synthetic_faces
from workers.cluster.cluster_worker import ClusterWorker
from workers.embed.embed_worker import EmbedWorker
from workers.settings import Settings, WorkerSettings

DIM = 512


def test_a_frame_at_the_brokers_limit_is_a_dead_letter_that_fits_and_the_frame_behind_it_is_served(
    kafka_bootstrap: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    kafka = fresh_kafka(kafka_bootstrap)
    headers = FrameHeaders(camera="door", frame=0, timestamp=1.0).to_kafka()
    garbage = np.random.default_rng(0).bytes(990_000)  # the producer's default limit is 1,000,000 with overhead
    photo = sample_images()[0].read_bytes()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(kafka.frames_topic, key=b"door", value=garbage, headers=headers)
    producer.produce(kafka.frames_topic, key=b"k" * 200_000, value=b"\xff\xd8", headers=[("camera", b"x" * 300_000)])
    producer.produce(
        kafka.frames_topic, key=b"door", value=photo, headers=[(n, b"1" if n == "frame" else v) for n, v in headers]
    )
    assert producer.flush(30) == 0

    worker = EmbedWorker(Settings(models=cpu_models, kafka=kafka), analyzer, group=f"embed-{uuid.uuid4().hex[:8]}")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop.is_set,), daemon=True)
    thread.start()
    wait_for(lambda: worker.pipeline.counters.frames + sum(worker.dead_letters.values()) >= 3, 180, "three frames")
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive()

    dead = read_all(kafka_bootstrap, kafka.dead_letter_topic)
    assert len(dead) == 2
    letters = {DeadLetter.from_json(value).reason: DeadLetter.from_json(value) for _, value in dead}
    assert all(len(value) <= kafka.max_message_bytes for _, value in dead)
    big = letters["not_image"]
    assert big.value_truncated
    assert big.value_bytes == len(garbage)
    assert big.value_sha256 == hashlib.sha256(garbage).hexdigest()
    prefix = base64.b64decode(big.value or "")
    assert len(prefix) > 700_000  # base64 takes 4 bytes for 3
    assert garbage.startswith(prefix)
    headed = letters["missing_header"]
    assert not headed.value_truncated
    assert headed.value == DeadLetter.b64(b"\xff\xd8")
    assert [len(base64.b64decode(value)) for _, value in headed.headers] == [1024]
    faces = [parse_faces_topic(value) for _, value in read_all(kafka_bootstrap, kafka.faces_topic)]
    assert [f for f in faces if isinstance(f, FaceRecord)], "the valid frame behind them was served"


def _members(space: str, count: int) -> list[FaceRecord]:
    """``count`` faces of one person from a camera with a long name: face ids of about 40 characters."""
    rng = np.random.default_rng(5)
    centre = rng.normal(size=DIM)
    records = []
    for frame in range(count):
        vector = centre / np.linalg.norm(centre) + rng.normal(scale=0.1 / np.sqrt(DIM), size=DIM)
        records.append(synthetic_face(space, "entrance-north-door-camera-0042", frame, vector))
    return records


def test_events_of_a_huge_correction_are_cut_into_pieces_that_fit_the_topic(
    kafka_bootstrap: str, redis_url: str
) -> None:
    limit = 20_000  # the identities topic's own max.message.bytes, as the worker is told
    kafka = fresh_kafka(kafka_bootstrap, max_message_bytes=limit)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    entry = ConfigEntry("max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET)
    topic = ConfigResource(ConfigResource.Type.TOPIC, kafka.identities_topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([topic]).values():
        future.result(timeout=30)
    space = "p" + uuid.uuid4().hex[:8]
    settings = Settings(
        kafka=kafka, worker=WorkerSettings(cluster_group=f"cluster-{space}", redis_url=redis_url, metrics_port=0)
    )
    faces = _members(space, 900)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for face in faces:
        producer.produce(kafka.faces_topic, key=space.encode(), value=face.to_json())
    assert producer.flush(30) == 0

    def events() -> list[bytes]:
        return [value for _, value in read_all(kafka_bootstrap, kafka.identities_topic, 1.0)]

    with running(ClusterWorker(settings, connect(redis_url))):
        wait_for(lambda: len(identities_view(events())[0]) == len(faces), 120, "every face assigned")
        (cluster,) = set(identities_view(events())[1].values())
        rejected, erased = faces[0].face_id, faces[1].face_id
        commands = [
            {"type": "reject", "command_id": "r-1", "space": space, "face": rejected, "cluster": cluster},
            {"type": "forget", "command_id": "f-1", "space": space, "faces": [erased]},
        ]
        for command in commands:
            producer.produce(kafka.commands_topic, key=space.encode(), value=json.dumps(command).encode())
        assert producer.flush(30) == 0
        wait_for(lambda: any(b'"type":"forgotten"' in v for v in events()), 60, "both corrections applied")

    values = events()
    assert all(len(value) <= limit for value in values)
    splits = [SplitEvent.from_json(v) for v in values if b'"type":"split"' in v]
    assert len(splits) > 1
    assert [s.piece for s in splits] == list(range(1, len(splits) + 1))
    assert {s.pieces for s in splits} == {len(splits)}
    members = {face for s in splits for part in s.parts for face in part.faces}
    assert members == {f.face_id for f in faces}
    tombstones = [ForgottenEvent.from_json(v) for v in values if b'"type":"forgotten"' in v]
    assert len(tombstones) > 1
    assert {face for t in tombstones for face in t.faces} == {erased}
    # The erased face's cluster as the reject left it (the rejected face and its near copies went elsewhere).
    after_reject: dict[int, set[str]] = {}
    for split in splits:
        for part in split.parts:
            after_reject.setdefault(part.cluster, set()).update(part.faces)
    (home,) = [members for members in after_reject.values() if erased in members]
    left = {face for t in tombstones for part in t.parts for face in part.faces}
    assert left == home - {erased}


def test_spaces_outside_the_allow_list_or_beyond_the_cap_are_dead_letters_and_the_others_are_served(
    kafka_bootstrap: str, redis_url: str
) -> None:
    kafka = fresh_kafka(kafka_bootstrap)
    tag = uuid.uuid4().hex[:6]
    north, south, intruder = f"north-{tag}", f"south-{tag}", f"intruder-{tag}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for space in (intruder, north, south):  # the intruder first: the spaces behind it are served
        for face in synthetic_faces(6, identities=2, space=space, seed=1):
            producer.produce(kafka.faces_topic, key=space.encode(), value=face.to_json())
    assert producer.flush(30) == 0
    worker = WorkerSettings(
        cluster_group=f"cluster-{tag}", redis_url=redis_url, metrics_port=0, spaces=(north, south), max_spaces=1
    )
    cluster = ClusterWorker(Settings(kafka=kafka, worker=worker), connect(redis_url))
    with running(cluster):
        wait_for(lambda: cluster.counters.faces + sum(cluster.counters.dead_letters.values()) >= 18, 60, "all faces")
    letters = [DeadLetter.from_json(value) for _, value in read_all(kafka_bootstrap, kafka.dead_letter_topic, 1.0)]
    assert Counter(letter.reason for letter in letters) == {"space_not_allowed": 6, "too_many_spaces": 6}
    assert cluster.counters.faces == 6
    events = [json.loads(value) for _, value in read_all(kafka_bootstrap, kafka.identities_topic, 1.0)]
    assert {event["space"] for event in events} == {north}


def test_with_an_erasures_topic_only_it_can_erase_and_it_carries_nothing_else(
    kafka_bootstrap: str, redis_url: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    kafka = fresh_kafka(kafka_bootstrap, erasures_topic=f"erasures-{tag}")
    create_topics(kafka_bootstrap, [kafka.erasures_topic])
    space = f"e-{tag}"
    faces = synthetic_faces(8, identities=2, space=space, seed=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for face in faces:
        producer.produce(kafka.faces_topic, key=space.encode(), value=face.to_json())

    def command(kind: str, number: int, **fields: object) -> bytes:
        return json.dumps({"type": kind, "command_id": f"{kind}-{number}", "space": space, **fields}).encode()

    erased, kept = faces[0].face_id, faces[1].face_id
    producer.produce(kafka.commands_topic, key=space.encode(), value=command("forget", 1, faces=[kept]))
    producer.produce(kafka.erasures_topic, key=space.encode(), value=command("label", 2, cluster=0, name="Ann"))
    producer.produce(kafka.erasures_topic, key=space.encode(), value=command("forget", 3, faces=[erased]))
    assert producer.flush(30) == 0
    worker = WorkerSettings(cluster_group=f"cluster-{tag}", redis_url=redis_url, metrics_port=0)
    cluster = ClusterWorker(Settings(kafka=kafka, worker=worker), connect(redis_url))

    def events() -> list[dict[str, object]]:
        return [json.loads(value) for _, value in read_all(kafka_bootstrap, kafka.identities_topic, 1.0)]

    with running(cluster):
        wait_for(lambda: any(e["type"] == "forgotten" for e in events()), 60, "the erasure applied")
        wait_for(lambda: sum(cluster.counters.dead_letters.values()) >= 2, 30, "the two refusals")
    (tombstone,) = [e for e in events() if e["type"] == "forgotten"]
    assert tombstone["faces"] == [erased]
    letters = [DeadLetter.from_json(value) for _, value in read_all(kafka_bootstrap, kafka.dead_letter_topic, 1.0)]
    assert sorted((letter.reason, letter.topic) for letter in letters) == [
        ("erasure_not_allowed", kafka.commands_topic),
        ("not_an_erasure", kafka.erasures_topic),
    ]
