"""Both stages on a broker that speaks SASL_SSL only, with SCRAM users and ACLs (scripts/kafka start-secure;
certificates made at test time): they work with exactly the rights docs/operations.md lists; a wrong password,
or a topic it may not write, makes the cluster stage not-ready with a clear reason, and loses nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # documented, but not re-exported for mypy
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from confluent_kafka.cimpl import NewTopic

from clustering.redis_state.redis_client import connect
from models.analyzer import FaceAnalyzer
from models.registry import sample_images
from streaming.messages import FaceRecord, parse_faces_topic
from streaming.produce import produce_sources
from streaming.settings import KafkaSettings
from streaming.sources import FrameSource
from tests.local_services import start_secure_kafka, stop_kafka, wait_for
from tests.streams import identities_view, read_all, running, synthetic_faces
from workers.cluster.cluster_worker import ClusterWorker
from workers.embed.embed_worker import EmbedWorker
from workers.settings import Settings, WorkerSettings

ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex


@dataclass(frozen=True)
class SecureBroker:
    bootstrap: str
    ca_file: Path
    passwords: dict[str, str]

    def client(self, user: str, password: str | None = None) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": password or (ADMIN_PASSWORD if user == "admin" else self.passwords[user]),
            "ssl.ca.location": str(self.ca_file),
        }


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    folder = tmp_path_factory.mktemp("secure-kafka")
    passwords = {"cluster": "cluster-" + uuid.uuid4().hex, "embed": "embed-" + uuid.uuid4().hex}
    bootstrap = start_secure_kafka(folder, ADMIN_PASSWORD, passwords)
    try:
        yield SecureBroker(bootstrap, folder / "ca.crt", passwords)
    finally:
        stop_kafka(folder)


def _allow(
    admin: AdminClient,
    kind: ResourceType,
    name: str,
    operation: AclOperation,
    prefixed: bool = False,
    user: str = "cluster",
) -> None:
    pattern = ResourcePatternType.PREFIXED if prefixed else ResourcePatternType.LITERAL
    binding = AclBinding(kind, name, pattern, f"User:{user}", "*", operation, AclPermissionType.ALLOW)
    for future in admin.create_acls([binding]).values():
        future.result(timeout=30)


def _setup(
    broker: SecureBroker, tmp_path: Path, redis_url: str, *, may_write_identities: bool, faces: bool = True
) -> Settings:
    """Topics of the test's own, faces on them, and the cluster principal's rights (docs/operations.md)."""
    suffix = uuid.uuid4().hex[:10]
    kafka = KafkaSettings(
        bootstrap_servers=broker.bootstrap,
        faces_topic=f"faces-{suffix}",
        identities_topic=f"ids-{suffix}",
        dead_letter_topic=f"dead-{suffix}",
        commands_topic=f"commands-{suffix}",
        client={k: v for k, v in broker.client("cluster").items() if k not in ("bootstrap.servers", "sasl.password")},
        sasl_password_file=tmp_path / "kafka.password",
    )
    (tmp_path / "kafka.password").write_text(broker.passwords["cluster"] + "\n")
    admin = AdminClient(broker.client("admin"))
    names = (kafka.faces_topic, kafka.identities_topic, kafka.dead_letter_topic, kafka.commands_topic)
    topics = [NewTopic(name, 1, 1) for name in names]
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)
    group = f"cluster-{suffix}"
    _allow(admin, ResourceType.TOPIC, kafka.faces_topic, AclOperation.READ)
    _allow(admin, ResourceType.TOPIC, kafka.commands_topic, AclOperation.READ)
    _allow(admin, ResourceType.TOPIC, kafka.faces_topic, AclOperation.WRITE)  # commands are forwarded there
    _allow(admin, ResourceType.GROUP, group, AclOperation.READ)
    _allow(admin, ResourceType.TOPIC, kafka.dead_letter_topic, AclOperation.WRITE)
    _allow(admin, ResourceType.TRANSACTIONAL_ID, f"{group}-", AclOperation.WRITE, prefixed=True)
    if may_write_identities:
        _allow(admin, ResourceType.TOPIC, kafka.identities_topic, AclOperation.WRITE)
    producer = Producer(broker.client("admin"))
    for record in synthetic_faces(200, identities=15, space=f"k{suffix}", seed=19) if faces else []:
        producer.produce(kafka.faces_topic, key=record.space.encode(), value=record.to_json())
    assert producer.flush(30) == 0
    return Settings(kafka=kafka, worker=WorkerSettings(cluster_group=group, redis_url=redis_url, retry_max_s=1.0))


def _run_until(worker: ClusterWorker, done: Callable[[], bool], timeout_s: float) -> None:
    with running(worker):
        wait_for(done, timeout_s, "the cluster worker")


def test_the_cluster_stage_works_over_sasl_ssl_with_only_its_acls(
    broker: SecureBroker, tmp_path: Path, redis_url: str
) -> None:
    settings = _setup(broker, tmp_path, redis_url, may_write_identities=True)
    worker = ClusterWorker(settings, connect(redis_url))
    _run_until(worker, lambda: worker.counters.faces == 200 and worker.health.report()[0], 120)
    consumer = {k: v for k, v in broker.client("admin").items() if k != "bootstrap.servers"}
    values = [v for _, v in read_all(broker.bootstrap, settings.kafka.identities_topic, client=consumer)]
    assigned, _ = identities_view(values)
    assert len(assigned) == 200
    assert set(assigned.values()) == {1}


def test_a_wrong_password_is_named_by_readiness(broker: SecureBroker, tmp_path: Path, redis_url: str) -> None:
    settings = _setup(broker, tmp_path, redis_url, may_write_identities=True)
    (tmp_path / "kafka.password").write_text("not-the-password\n")
    worker = ClusterWorker(settings, connect(redis_url))
    reason = "Kafka refused the credentials at " + broker.bootstrap
    _run_until(worker, lambda: worker.health.report()[1].startswith(reason), 60)
    ready, why = worker.health.report()
    assert not ready
    assert "not-the-password" not in why
    assert worker.counters.faces == 0


def test_a_topic_it_may_not_write_holds_it_not_ready_and_loses_nothing(
    broker: SecureBroker, tmp_path: Path, redis_url: str
) -> None:
    settings = _setup(broker, tmp_path, redis_url, may_write_identities=False)
    worker = ClusterWorker(settings, connect(redis_url))
    _run_until(worker, lambda: "AUTHORIZATION" in worker.health.report()[1].upper(), 90)
    assert not worker.health.report()[0]

    # The operator grants the right: a new worker publishes every assignment once.
    _allow(AdminClient(broker.client("admin")), ResourceType.TOPIC, settings.kafka.identities_topic, AclOperation.WRITE)
    again = ClusterWorker(settings, connect(redis_url))
    consumer = {k: v for k, v in broker.client("admin").items() if k != "bootstrap.servers"}

    def published() -> bool:
        values = [v for _, v in read_all(broker.bootstrap, settings.kafka.identities_topic, 1.0, client=consumer)]
        return len(identities_view(values)[0]) == 200

    _run_until(again, published, 120)
    values = [v for _, v in read_all(broker.bootstrap, settings.kafka.identities_topic, client=consumer)]
    assert set(identities_view(values)[0].values()) == {1}


def test_frames_to_identities_over_sasl_ssl_each_stage_with_only_its_acls(
    broker: SecureBroker, tmp_path: Path, redis_url: str, analyzer: FaceAnalyzer
) -> None:
    settings = _setup(broker, tmp_path, redis_url, may_write_identities=True, faces=False)
    kafka = settings.kafka
    frames_topic = kafka.faces_topic.replace("faces-", "frames-")
    admin = AdminClient(broker.client("admin"))
    for future in admin.create_topics([NewTopic(frames_topic, 1, 1)]).values():
        future.result(timeout=30)
    embed_group = frames_topic.replace("frames-", "embed-")
    _allow(admin, ResourceType.TOPIC, frames_topic, AclOperation.READ, user="embed")
    _allow(admin, ResourceType.GROUP, embed_group, AclOperation.READ, user="embed")
    for topic in (kafka.faces_topic, kafka.dead_letter_topic):
        _allow(admin, ResourceType.TOPIC, topic, AclOperation.WRITE, user="embed")
    (tmp_path / "embed.password").write_text(broker.passwords["embed"])
    embed_kafka = kafka.model_copy(
        update={
            "frames_topic": frames_topic,
            "client": {**kafka.client, "sasl.username": "embed"},
            "sasl_password_file": tmp_path / "embed.password",
        }
    )
    (tmp_path / "admin.password").write_text(ADMIN_PASSWORD)
    admin_kafka = embed_kafka.model_copy(
        update={"client": {**kafka.client, "sasl.username": "admin"}, "sasl_password_file": tmp_path / "admin.password"}
    )
    sources = [FrameSource(str(path), f"cam{i}") for i, path in enumerate(sample_images())]
    produced = produce_sources(sources, admin_kafka, space="sasl")
    assert produced.frames == len(sources)

    embed = EmbedWorker(settings.model_copy(update={"kafka": embed_kafka}), analyzer, group=embed_group)
    cluster = ClusterWorker(settings, connect(redis_url))
    consumer = {k: v for k, v in broker.client("admin").items() if k != "bootstrap.servers"}
    faces: list[FaceRecord] = []

    def every_face_assigned() -> bool:
        records = [parse_faces_topic(v) for _, v in read_all(broker.bootstrap, kafka.faces_topic, 1.0, client=consumer)]
        faces[:] = [r for r in records if isinstance(r, FaceRecord) and r.embedding]
        values = [v for _, v in read_all(broker.bootstrap, kafka.identities_topic, 1.0, client=consumer)]
        return bool(faces) and set(identities_view(values)[0]) == {f.face_id for f in faces}

    with running(embed, cluster):
        wait_for(every_face_assigned, 180, "the faces of the sample photos assigned")
    assert len(faces) >= 10
    assert embed.health.report()[0]
    assert cluster.health.report()[0]
    assert not embed.dead_letters
