"""Real services for tests, on 127.0.0.1 on free ports, stopped afterwards: a redis-server, and a
single-node Apache Kafka broker (KRaft) started by scripts/kafka from jars resolved on Maven Central.

Where the binary is missing the tests that need it skip with the reason, unless FACESTREAM_REQUIRE_SERVICES
is set (as .ci/run does), in which case they fail: in CI they always run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def missing(what: str) -> None:
    message = f"{what} is not installed"
    if os.environ.get("FACESTREAM_REQUIRE_SERVICES"):
        pytest.fail(message + " and FACESTREAM_REQUIRE_SERVICES is set")
    pytest.skip(message)


class RedisServer:
    def __init__(
        self, folder: Path, durable: bool = False, password: str | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        """``durable``: an append-only file synced on every write, so a restart keeps the data.
        ``password``: clients must give it (requirepass). ``extra``: more redis-server arguments."""
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server (Debian package redis-server)")
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


REPO = Path(__file__).resolve().parents[1]


def start_kafka(folder: Path) -> str:
    """Starts a broker whose data lives in ``folder`` (again, same port and data, if it ran there before)."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            missing(f"{tool} (needed to run the Kafka broker)")
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
            missing(f"{tool} (needed to run the secure Kafka broker)")
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


class RedisClusterServers:
    """A local Redis Cluster of three masters (Debian's redis-server, cluster-enabled, AOF synced on every write)."""

    def __init__(self, folder: Path) -> None:
        # The bus port is the client port + 10,000 unless named, which a free port above 55,535 cannot be.
        self.nodes = [
            RedisServer(
                folder / f"node{n}",
                durable=True,
                extra=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    str(free_port()),
                ),
            )
            for n in range(3)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.folder.mkdir(parents=True, exist_ok=True)
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            missing("redis-cli (Debian package redis-tools)")
        assert cli is not None
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
        )
        self.wait_ok()

    def restart(self, node: RedisServer) -> None:
        """Stops a node and starts it again on its ports and files, then waits for the cluster to be whole."""
        node.stop()
        node.start()
        self.wait_ok()

    def wait_ok(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            states = [redis.Redis(port=n.port).cluster("info").get("cluster_state") for n in self.nodes]
            if states == ["ok"] * len(self.nodes):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster is not whole: {states}")
            time.sleep(0.2)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextmanager
def redis_cluster(folder: Path) -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(folder)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()
