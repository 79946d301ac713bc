"""Real services and worker helpers on 127.0.0.1, for the tests and the benchmarks alike: a redis-server, a
single-node Apache Kafka broker started by scripts/kafka (plain, or SASL_SSL with ACLs), topics of their own,
and what it takes to start and watch a `facestream worker` process.

A missing binary raises ServiceMissingError; the tests turn that into a skip (or a failure in CI) through
``on_missing``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import redis
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streaming.settings import KafkaSettings
from workers.settings import Settings


class ServiceMissingError(RuntimeError):
    """A binary a local service needs is not installed."""


def _raise_missing(what: str) -> NoReturn:
    raise ServiceMissingError(f"{what} is not installed")


#: What happens when a binary is missing: raise (benchmarks), or skip / fail (the tests set their own).
on_missing: Callable[[str], NoReturn] = _raise_missing


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    def __init__(
        self, folder: Path, durable: bool = False, password: str | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        """``durable``: an append-only file synced on every write, so a restart keeps the data.
        ``password``: clients must give it (requirepass). ``extra``: more redis-server arguments."""
        binary = shutil.which("redis-server")
        if binary is None:
            on_missing("redis-server (Debian package redis-server)")
        assert binary is not None
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.durable = durable
        self.password = password
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "yes" if self.durable else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.folder),
                "--protected-mode",
                "yes",
                *(["--requirepass", self.password] if self.password else []),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_connect_timeout=0.2)
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextmanager
def redis_server(folder: Path, durable: bool = False, password: str | None = None) -> Iterator[RedisServer]:
    server = RedisServer(folder, durable, password)
    server.start()
    try:
        yield server
    finally:
        server.stop()


REPO = Path(__file__).resolve().parents[1]  # scripts/kafka lives in the checkout


def start_kafka(folder: Path) -> str:
    """Starts a broker whose data lives in ``folder`` (again, same port and data, if it ran there before)."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            on_missing(f"{tool} (needed to run the Kafka broker)")
    started = subprocess.run(
        [str(REPO / "scripts" / "kafka"), "start", str(folder)], capture_output=True, text=True, check=False
    )
    if started.returncode != 0:
        raise RuntimeError(f"the Kafka broker did not start: {started.stderr.strip()}")
    return started.stdout.strip().splitlines()[-1]


def start_secure_kafka(folder: Path, admin_password: str, users: dict[str, str]) -> str:
    """A broker with a SASL_SSL listener only (SCRAM-SHA-512 ``users`` and ``admin``, ACLs enforced); its CA
    certificate is ``folder / "ca.crt"``."""
    for tool in ("java", "mvn", "openssl"):
        if shutil.which(tool) is None:
            on_missing(f"{tool} (needed to run the secure Kafka broker)")
    pairs = [f"{user}={password}" for user, password in users.items()]
    command = [str(REPO / "scripts" / "kafka"), "start-secure", str(folder), admin_password, *pairs]
    started = subprocess.run(command, capture_output=True, text=True, check=False)
    if started.returncode != 0:
        raise RuntimeError(f"the secure Kafka broker did not start: {started.stderr.strip()}")
    return started.stdout.strip().splitlines()[-1]


def stop_kafka(folder: Path) -> None:
    subprocess.run([str(REPO / "scripts" / "kafka"), "stop", str(folder)], check=True)


@contextmanager
def kafka_broker(folder: Path) -> Iterator[str]:
    """Bootstrap address of a fresh broker whose data lives in ``folder``."""
    bootstrap = start_kafka(folder)
    try:
        yield bootstrap
    finally:
        stop_kafka(folder)


def create_topics(bootstrap: str, names: list[str], partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything a server sends on ``sock`` until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


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
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out waiting for {what}")
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
        commands_topic=f"commands-{suffix}",
        **overrides,
    )
    create_topics(bootstrap, [kafka.frames_topic], frames_partitions)
    create_topics(bootstrap, [kafka.faces_topic], faces_partitions)
    create_topics(bootstrap, [kafka.identities_topic, kafka.dead_letter_topic, kafka.commands_topic])
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
            f"FACESTREAM_{group}__{name.upper()}": json.dumps(list(v)) if isinstance(v, list | tuple) else str(v)
            for name, v in values.items()
            if v is not None and not isinstance(v, dict)
        }
    env["FACESTREAM_MODELS__RUNTIME__CACHE_DIR"] = str(settings.models.runtime.cache_dir)
    return env | extra
