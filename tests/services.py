"""Real services for tests, on 127.0.0.1 on free ports, stopped afterwards: a redis-server, a single-node
Apache Kafka broker (KRaft) started by scripts/kafka from jars resolved on Maven Central (tests/local_services.py,
shared with the benchmarks), and a local Redis Cluster.

Where the binary is missing the tests that need it skip with the reason, unless FACESTREAM_REQUIRE_SERVICES
is set (as .ci/run does), in which case they fail: in CI they always run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import redis

from tests.local_services import RedisServer, free_port


def missing(what: str) -> NoReturn:
    message = f"{what} is not installed"
    if os.environ.get("FACESTREAM_REQUIRE_SERVICES"):
        pytest.fail(message + " and FACESTREAM_REQUIRE_SERVICES is set")
    pytest.skip(message)


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
