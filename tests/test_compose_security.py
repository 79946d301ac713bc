"""The compose deployment's security, run for real without Docker: deploy/compose/make-secrets makes the
certificates and passwords, the compose broker's own entrypoint (kafka-broker.sh, over `scripts/kafka tools`)
and setup (kafka-setup.sh) start Kafka with SASL_SSL and its ACLs, Debian's redis-server runs the compose
Redis command line, and the producer, embed and cluster stages run with the compose file's environment, each
with only its own secrets: sample photos go all the way to identities."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from clustering.redis_state.redis_client import check_permissions, connect
from models.analyzer import FaceAnalyzer
from models.registry import sample_images
from streaming.messages import FaceRecord, parse_faces_topic
from streaming.produce import produce_sources
from streaming.sources import FrameSource
from tests.local_services import REPO, free_port, wait_for
from tests.secure_redis import CLUSTER_STAGE_RIGHTS
from tests.services import missing
from tests.streams import identities_view, read_all, running
from workers.cluster.cluster_worker import ClusterWorker
from workers.embed.embed_worker import EmbedWorker
from workers.settings import Settings

COMPOSE = REPO / "deploy" / "compose"


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())["services"]
    return services


def make_secrets(folder: Path) -> Path:
    if shutil.which("openssl") is None:
        missing("openssl (Debian package openssl)")
    made = subprocess.run([str(COMPOSE / "make-secrets"), str(folder)], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    return folder


@dataclass(frozen=True)
class ComposeHost:
    """Where the compose services' names and mounts lead on this machine."""

    secrets: Path
    kafka: str
    redis: str

    def local(self, value: str) -> str:
        return (
            value.replace("/run/secrets/", f"{self.secrets}/")
            .replace("kafka:9092", self.kafka)
            .replace("redis:6379", self.redis)
        )

    def settings(self, service: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
        """The settings a service of the compose file runs with, its secrets read from here."""
        environment: dict[str, str] = compose_services()[service]["environment"]
        with monkeypatch.context() as env:
            for name, value in environment.items():
                env.setenv(name, self.local(value))
            env.setenv("FACESTREAM_WORKER__METRICS_PORT", "0")
            return Settings()


def _start_redis(host_secrets: Path, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server (Debian package redis-server)")
    assert binary is not None
    command: list[str] = compose_services()["redis"]["command"]
    port = free_port()
    local = [str(port) if arg == "6379" else arg.replace("/run/secrets/", f"{host_secrets}/") for arg in command[1:]]
    process = subprocess.Popen(
        [binary, *local, "--bind", "127.0.0.1", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, port


@pytest.fixture(scope="module")
def compose_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeHost]:
    folder = tmp_path_factory.mktemp("compose")
    secrets = make_secrets(folder / "secrets")
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            missing(f"{tool} (needed to run the Kafka broker)")
    kafka_home = folder / "kafka"
    subprocess.run([str(REPO / "scripts" / "kafka"), "tools", str(kafka_home)], check=True, capture_output=True)
    port = free_port()
    env = os.environ | {
        "KAFKA_HOME": str(kafka_home),
        "SECRETS_DIR": str(secrets),
        "KAFKA_DATA_DIR": str(folder / "kafka-data"),
        "KAFKA_CONFIG_DIR": str(folder / "kafka-config"),
        "KAFKA_HOST": "127.0.0.1",
        "KAFKA_BIND": "127.0.0.1",
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    with (folder / "broker.log").open("wb") as log:
        broker = subprocess.Popen(["bash", str(COMPOSE / "kafka-broker.sh")], env=env, stdout=log, stderr=log)
    redis_server, redis_port = _start_redis(secrets, folder)
    try:
        setup = subprocess.run(
            ["bash", str(COMPOSE / "kafka-setup.sh")],
            env=env | {"KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert setup.returncode == 0, setup.stderr[-2000:]
        yield ComposeHost(secrets, f"127.0.0.1:{port}", f"127.0.0.1:{redis_port}")
    finally:
        for process in (broker, redis_server):
            process.terminate()
            process.wait(timeout=60)


def test_make_secrets_keeps_what_it_made(tmp_path: Path) -> None:
    first = make_secrets(tmp_path / "secrets")
    made = {path.name: path.read_bytes() for path in first.iterdir()}
    make_secrets(first)
    assert {path.name: path.read_bytes() for path in first.iterdir()} == made
    declared = yaml.safe_load((COMPOSE / "compose.yaml").read_text())["secrets"]
    # Every secret under ./secrets is made; the camera list (./cameras.toml) is the operator's to write.
    generated = {Path(s["file"]).name for s in declared.values() if Path(s["file"]).parent.name == "secrets"}
    assert generated <= made.keys()
    assert {Path(s["file"]).name for s in declared.values()} - generated == {"cameras.toml"}
    assert oct(first.stat().st_mode & 0o777) == "0o700"
    password = (first / "redis-password").read_text().strip()
    acl = (first / "redis-users.acl").read_text()
    assert password not in acl  # its hash only
    assert acl.rstrip().endswith(CLUSTER_STAGE_RIGHTS)  # the rights docs/operations.md lists, tested there too


def test_the_compose_redis_admits_the_cluster_stage_over_tls_and_nobody_else(
    compose_host: ComposeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = compose_host.settings("cluster", monkeypatch).worker.redis_address()
    assert address.url.startswith("rediss://facestream@127.0.0.1:")
    check_permissions(connect(address, retries=2), address.url)
    host, port = compose_host.redis.split(":")
    anonymous = redis.Redis(host=host, port=int(port), ssl=True, ssl_ca_certs=str(compose_host.secrets / "ca.crt"))
    with pytest.raises(redis.AuthenticationError):  # the default user is off
        anonymous.ping()


def test_sample_photos_to_identities_with_the_compose_secrets_and_acls(
    compose_host: ComposeHost, monkeypatch: pytest.MonkeyPatch, analyzer: FaceAnalyzer
) -> None:
    producer, embed_settings, cluster_settings = (
        compose_host.settings(service, monkeypatch) for service in ("producer", "embed", "cluster")
    )
    sources = [FrameSource(str(path), f"cam{i}") for i, path in enumerate(sample_images())]
    assert produce_sources(sources, producer.kafka, space="compose").frames == len(sources)

    embed = EmbedWorker(embed_settings, analyzer)
    cluster = ClusterWorker(cluster_settings, connect(cluster_settings.worker.redis_address()))
    admin = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "admin",
        "sasl.password": (compose_host.secrets / "kafka-admin-password").read_text().strip(),
        "ssl.ca.location": str(compose_host.secrets / "ca.crt"),
    }
    kafka = cluster_settings.kafka
    faces: list[FaceRecord] = []

    def every_face_assigned() -> bool:
        records = [parse_faces_topic(v) for _, v in read_all(compose_host.kafka, kafka.faces_topic, 1.0, admin)]
        faces[:] = [r for r in records if isinstance(r, FaceRecord) and r.embedding]
        values = [v for _, v in read_all(compose_host.kafka, kafka.identities_topic, 1.0, admin)]
        return bool(faces) and set(identities_view(values)[0]) == {f.face_id for f in faces}

    with running(embed, cluster):
        wait_for(every_face_assigned, 180, "the faces of the sample photos assigned")
    assert len(faces) >= 10
    assert not embed.dead_letters
