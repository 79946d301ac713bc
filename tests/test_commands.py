"""Corrections through the service, on the real broker and Redis: commands on the commands topic reach their
space's writer through the faces topic, apply once (one event each, a repeated command id changes nothing),
bad ones are dead letters, later faces obey them, and names survive a restart of the writer."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer

from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_store import RedisStore
from clustering.settings import ClusteringSettings
from streaming.commands import ForgottenEvent, LabelledEvent, SplitEvent
from streaming.messages import DeadLetter, FaceRecord
from tests.local_services import fresh_kafka, settings_env, wait_for
from tests.streams import identities_view, read_all, redis_traces, running, synthetic_face, synthetic_faces
from workers.cluster.cluster_worker import ClusterWorker
from workers.settings import Settings, WorkerSettings

DIM = 512


def _look_alikes(space: str, first_frame: int, per_person: int, seed: int) -> tuple[list[FaceRecord], list[str]]:
    """Faces of two siblings (centres 0.8 similar: they start in one cluster); returns them and the second's ids."""
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(0)
    a, other = base.normal(size=DIM), base.normal(size=DIM)
    a /= np.linalg.norm(a)
    other -= other @ a * a
    other /= np.linalg.norm(other)
    b = 0.8 * a + 0.6 * other
    records, second = [], []
    for i in range(2 * per_person):
        centre = a if i % 2 == 0 else b
        vector = centre + rng.normal(scale=0.15 / np.sqrt(DIM), size=DIM)
        frame = first_frame + i
        face_id = f"door:{frame}:0"
        records.append(synthetic_face(space, "door", frame, vector))
        if i % 2:
            second.append(face_id)
    return records, second


def _service(
    bootstrap: str, redis_url: str, prefix: str, clustering: ClusteringSettings | None = None, **worker: Any
) -> tuple[Settings, str]:
    """Settings of a test's own topics, consumer group and identity space (``prefix`` and a random part)."""
    space = prefix + uuid.uuid4().hex[:8]
    config = WorkerSettings(cluster_group=f"cluster-{space}", redis_url=redis_url, **worker)
    return Settings(kafka=fresh_kafka(bootstrap), worker=config, clustering=clustering or ClusteringSettings()), space


def _produce(bootstrap: str, topic: str, space: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, key=space.encode(), value=value)
    assert producer.flush(30) == 0


def test_commands_apply_once_in_order_and_later_faces_obey_them(kafka_bootstrap: str, redis_url: str) -> None:
    settings, space = _service(kafka_bootstrap, redis_url, "c", metrics_port=0)
    kafka = settings.kafka
    faces, bob = _look_alikes(space, 0, 6, seed=1)
    _produce(kafka_bootstrap, kafka.faces_topic, space, [f.to_json() for f in faces])

    def events() -> list[bytes]:
        return [v for _, v in read_all(kafka_bootstrap, kafka.identities_topic, 1.0)]

    def split_events() -> list[SplitEvent]:
        return [SplitEvent.from_json(v) for v in events() if b'"type":"split"' in v]

    worker = ClusterWorker(settings, connect(redis_url))
    with running(worker):
        wait_for(lambda: len(identities_view(events())[0]) == len(faces), 60, "every face assigned")
        clusters = set(identities_view(events())[1].values())
        assert len(clusters) == 1, "the siblings should start in one cluster"
        (together,) = clusters
        split = {"type": "split", "version": 1, "command_id": "split-1", "space": space, "faces": bob}
        commands = [
            json.dumps(split).encode(),
            json.dumps({**split, "faces": bob[:1]}).encode(),  # the same id again: ignored
            b"{not json",
            json.dumps(
                {"type": "reject", "command_id": "bad-1", "space": space, "face": "x:1:0", "cluster": 0}
            ).encode(),
            json.dumps(
                {"type": "label", "command_id": "name-1", "space": space, "cluster": together, "name": "Ann"}
            ).encode(),
        ]
        _produce(kafka_bootstrap, kafka.commands_topic, space, commands)
        wait_for(lambda: b'"type":"labelled"' in b"".join(events()), 60, "the commands applied")
        later, later_bob = _look_alikes(space, 100, 3, seed=2)
        _produce(kafka_bootstrap, kafka.faces_topic, space, [f.to_json() for f in later])
        wait_for(lambda: len(identities_view(events())[0]) == len(faces) + len(later), 60, "the later faces")

    (split_event,) = split_events()
    assert split_event.command_id == "split-1"
    parts = {part.cluster: set(part.faces) for part in split_event.parts}
    assert set(bob) in parts.values()
    (bob_cluster,) = [cluster for cluster, members in parts.items() if members == set(bob)]
    view = identities_view(events())[1]
    assert {view[f] for f in later_bob} == {bob_cluster}
    assert {view[f.face_id] for f in later if f.face_id not in later_bob} == {together}
    (labelled,) = [LabelledEvent.from_json(v) for v in events() if b'"type":"labelled"' in v]
    assert (labelled.cluster, labelled.name) == (together, "Ann")
    letters = [DeadLetter.from_json(v) for _, v in read_all(kafka_bootstrap, kafka.dead_letter_topic, 1.0)]
    assert sorted(letter.reason for letter in letters) == ["malformed", "unknown_face"]

    # A restarted writer restores the corrections from Redis: the name, and the split it keeps obeying.
    store = RedisStore(connect(redis_url), space)
    assert store.load().clusters[together].name == "Ann"
    again = ClusterWorker(settings, connect(redis_url))
    more, more_bob = _look_alikes(space, 200, 2, seed=3)
    _produce(kafka_bootstrap, kafka.faces_topic, space, [f.to_json() for f in more])
    expected = len(faces) + len(later) + len(more)
    with running(again):
        wait_for(lambda: len(identities_view(events())[0]) == expected, 90, "faces after the restart")
    view = identities_view(events())[1]
    assert {view[f] for f in more_bob} == {bob_cluster}
    assert set(identities_view(events())[0].values()) == {1}, "a face was assigned twice"
    assert len(split_events()) == 1

    # Erasure on request: every face of the brother, gone from the state and from Redis; one tombstone event.
    everyone_bob = [*bob, *later_bob, *more_bob]
    forget = {"type": "forget", "command_id": "erase-1", "space": space, "cluster": bob_cluster}
    _produce(kafka_bootstrap, kafka.commands_topic, space, [json.dumps(forget).encode()])
    with running(ClusterWorker(settings, connect(redis_url))):
        wait_for(lambda: b'"type":"forgotten"' in b"".join(events()), 60, "the forget applied")
    (tombstone,) = [ForgottenEvent.from_json(v) for v in events() if b'"type":"forgotten"' in v]
    assert set(tombstone.faces) == set(everyone_bob)
    assert not set(everyone_bob) & set(identities_view(events())[1])
    traces = redis_traces(connect(redis_url), space)
    assert not [face for face in everyone_bob if face.encode() in traces]


def test_retention_forgets_faces_stored_longer_ago_than_it_allows(kafka_bootstrap: str, redis_url: str) -> None:
    retention = ClusteringSettings(retention_days=3 / 86_400)  # three seconds
    settings, space = _service(kafka_bootstrap, redis_url, "r", retention, metrics_port=0)
    kafka = settings.kafka
    faces, _ = _look_alikes(space, 0, 5, seed=4)
    _produce(kafka_bootstrap, kafka.faces_topic, space, [f.to_json() for f in faces])

    def forgotten() -> set[str]:
        values = [v for _, v in read_all(kafka_bootstrap, kafka.identities_topic, 1.0) if b'"forgotten"' in v]
        return {face for value in values for face in ForgottenEvent.from_json(value).faces}

    with running(ClusterWorker(settings, connect(redis_url))):
        wait_for(lambda: forgotten() == {f.face_id for f in faces}, 60, "every face forgotten")
    traces = redis_traces(connect(redis_url), space)
    assert not [f.face_id for f in faces if f.face_id.encode() in traces]
    assert RedisStore(connect(redis_url), space).load().forgotten == set(range(len(faces)))


def test_one_event_per_command_through_a_sigkill_of_the_writer(kafka_bootstrap: str, redis_url: str) -> None:
    settings, space = _service(kafka_bootstrap, redis_url, "k", lease_ttl_s=2.0)
    kafka = settings.kafka
    faces = synthetic_faces(1500, identities=60, space=space, seed=11)
    _produce(kafka_bootstrap, kafka.faces_topic, space, [f.to_json() for f in faces])
    # Names for the first faces' clusters, interleaved with the stream: 40 commands, 5 of them repeated.
    labels = [
        {"type": "label", "command_id": f"name-{i}", "space": space, "cluster": i * 20, "name": f"person {i}"}
        for i in range(40)
    ]
    commands = [json.dumps(label).encode() for label in labels + labels[:5]]
    store = RedisStore(connect(redis_url), space)
    command = [sys.executable, "-m", "workers.cli", "worker", "--role", "cluster"]
    env = settings_env(settings, FACESTREAM_WORKER__METRICS_PORT="0")
    with (Path(tempfile.mkdtemp()) / "worker.log").open("wb") as log:
        first = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            wait_for(lambda: store.count() >= 300, 120, "the first worker to cluster 300 faces")
            _produce(kafka_bootstrap, kafka.commands_topic, space, commands)
            wait_for(lambda: len(store.load().commands) >= 10, 60, "some commands applied")
            first.kill()  # SIGKILL, possibly between the Redis step and the Kafka commit
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        second = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        try:
            wait_for(lambda: store.count() == len(faces) and len(store.load().commands) == 40, 120, "all applied")
            wait_for(
                lambda: (
                    sum(b'"labelled"' in v for _, v in read_all(kafka_bootstrap, kafka.identities_topic, 1.0)) >= 40
                ),
                60,
                "every labelled event published",
            )
        finally:
            second.kill()
            second.wait(timeout=10)
    published = Counter(
        LabelledEvent.from_json(v).command_id
        for _, v in read_all(kafka_bootstrap, kafka.identities_topic)
        if b'"type":"labelled"' in v
    )
    assert published == Counter({f"name-{i}": 1 for i in range(40)})
    names = {summary.name for summary in store.load().clusters.values() if summary.name}
    # Some commands named one cluster twice (the later name wins): every name kept is one a command gave.
    assert names
    assert names <= {f"person {i}" for i in range(40)}


def test_names_and_constraints_survive_a_standby_take_over(kafka_bootstrap: str, redis_url: str) -> None:
    settings, space = _service(kafka_bootstrap, redis_url, "t", metrics_port=0, lease_ttl_s=2.0)
    kafka = settings.kafka
    faces, bob = _look_alikes(space, 0, 4, seed=5)
    _produce(kafka_bootstrap, kafka.faces_topic, space, [f.to_json() for f in faces])

    def events() -> list[bytes]:
        return [v for _, v in read_all(kafka_bootstrap, kafka.identities_topic, 1.0)]

    writer, standby = ClusterWorker(settings, connect(redis_url)), ClusterWorker(settings, connect(redis_url))
    stop_writer, stop_standby = threading.Event(), threading.Event()
    threads = [
        threading.Thread(target=writer.run, args=(stop_writer.is_set,), daemon=True),
        threading.Thread(target=standby.run, args=(stop_standby.is_set,), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(identities_view(events())[0]) == len(faces), 60, "every face assigned")
        (together,) = set(identities_view(events())[1].values())
        split = {"type": "split", "command_id": "split-t", "space": space, "faces": bob, "version": 1}
        _produce(kafka_bootstrap, kafka.commands_topic, space, [json.dumps(split).encode()])
        wait_for(lambda: b'"type":"split"' in b"".join(events()), 60, "the split")
        view = identities_view(events())[1]
        bob_cluster = view[bob[0]]
        names = [(together, "Ann"), (bob_cluster, "Bob")]
        labels = [
            {"type": "label", "command_id": f"name-{n}", "space": space, "cluster": c, "name": n} for c, n in names
        ]
        _produce(kafka_bootstrap, kafka.commands_topic, space, [json.dumps(label).encode() for label in labels])
        wait_for(lambda: b"".join(events()).count(b'"type":"labelled"') == 2, 60, "the names")
        who = writer if writer.writers else standby
        (stop_writer if who is writer else stop_standby).set()  # the space's writer stops; the other takes over
        threads[0 if who is writer else 1].join(timeout=60)
        merge = {"type": "merge", "command_id": "merge-t", "space": space, "clusters": [together, bob_cluster]}
        later, later_bob = _look_alikes(space, 100, 2, seed=6)
        _produce(kafka_bootstrap, kafka.faces_topic, space, [f.to_json() for f in later])
        _produce(kafka_bootstrap, kafka.commands_topic, space, [json.dumps({**merge, "version": 1}).encode()])
        wait_for(lambda: b'"type":"conflict"' in b"".join(events()), 90, "the merge refused by the new writer")
        wait_for(lambda: len(identities_view(events())[0]) == len(faces) + len(later), 60, "the later faces")
    finally:
        stop_writer.set()
        stop_standby.set()
        for thread in threads:
            thread.join(timeout=60)
    view = identities_view(events())[1]
    assert {view[f] for f in later_bob} == {bob_cluster}
    clusters = RedisStore(connect(redis_url), space).load().clusters
    assert (clusters[together].name, clusters[bob_cluster].name) == ("Ann", "Bob")
