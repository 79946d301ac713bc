"""What an operator reads: no password in any output (passwords can come from files), services that cannot be
reached named as such, and librdkafka's lines at a bounded rate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clustering.redis_state.redis_client import connect
from clustering.store import StoreError
from streaming.kafka_logs import LINES_PER_WINDOW
from streaming.redact import redact
from tests.local_services import free_port, http_get, redis_server, wait_for
from workers.plumbing.metrics import Health

SECRET = "s3cret-Pw_42"


def _facestream(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it; its stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )


def test_redact_hides_the_password_of_every_url_and_keeps_the_rest() -> None:
    cases = {
        f"redis://:{SECRET}@10.0.0.5:6379/0": "redis://:***@10.0.0.5:6379/0",
        f"rtsp://admin:{SECRET}@cam-7.local:554/Streaming/101": "rtsp://admin:***@cam-7.local:554/Streaming/101",
        f"cannot open stream 'http://u:{SECRET}@h/x.mjpg': no": "cannot open stream 'http://u:***@h/x.mjpg': no",
        f"rediss://h:6380/0?password={SECRET}&ssl=1": "rediss://h:6380/0?password=***&ssl=1",
        "rtsp://cam-7.local:554/live, redis://127.0.0.1:6379/0": "rtsp://cam-7.local:554/live, redis://127.0.0.1:6379/0",
        f"http://h/v?auth={SECRET}&channel=2&apikey={SECRET}": "http://h/v?auth=***&channel=2&apikey=***",
    }
    for text, expected in cases.items():
        assert redact(text) == expected


def test_an_unreachable_redis_is_named_without_its_password() -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    done = _facestream(
        "worker", "--role", "cluster", FACESTREAM_WORKER__REDIS_URL=url, FACESTREAM_WORKER__METRICS_PORT="0"
    )
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "is unreachable" in output
    assert "redis://:***@127.0.0.1" in output
    assert SECRET not in output


def test_the_clustering_rooms_own_errors_never_carry_the_redis_password() -> None:
    """Without the command's log filter: the StoreError itself names the address with its password hidden."""
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreError) as raised:
        connect(url, retries=0, timeout_s=0.5)
    assert "redis://:***@127.0.0.1" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_a_redis_that_wants_a_password_says_so_and_a_secret_file_gives_it(tmp_path: Path) -> None:
    with redis_server(tmp_path, password=SECRET) as server:
        wrong = f"redis://:not-{SECRET}@127.0.0.1:{server.port}/0"
        done = _facestream(
            "worker", "--role", "cluster", FACESTREAM_WORKER__REDIS_URL=wrong, FACESTREAM_WORKER__METRICS_PORT="0"
        )
        assert done.returncode == 1
        assert "refused the password" in done.stderr
        assert SECRET not in done.stdout + done.stderr
        with pytest.raises(StoreError, match="asks for a password"):
            connect(server.url)
        secret_file = tmp_path / "redis-password"
        secret_file.write_text(SECRET + "\n")  # as `kubectl create secret` or an editor leaves it
        from workers.settings import WorkerSettings  # noqa: PLC0415

        settings = WorkerSettings(redis_url=server.url, redis_password_file=secret_file)
        assert connect(settings.redis_address()).ping()


@pytest.mark.parametrize("command", ["run", "produce"])
def test_a_stream_that_does_not_open_is_named_without_its_password(command: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://viewer:{SECRET}@127.0.0.1:{port}/video.mjpg?token={SECRET}&auth={SECRET}#{SECRET}"
    args = [command, url, "--no-progress", "--retries", "0"]
    args += ["--out", str(tmp_path / "out")] if command == "run" else ["--metrics-port", "0"]
    done = _facestream(*args, FACESTREAM_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert f"camera 127.0.0.1_{port}_video.mjpg: gave up after 0 reconnection(s): cannot open" in output
    assert f"http://127.0.0.1:{port}/video.mjpg" in output  # where it reads, without what is secret
    assert SECRET not in output
    written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert not any(SECRET in text for text in written)


def test_readiness_reasons_are_redacted() -> None:
    health = Health("cluster")
    health.not_ready(f"StoreError: Redis at redis://:{SECRET}@10.0.0.5:6379/0 is unreachable")
    ready, why = health.report()
    assert not ready
    assert "redis://:***@10.0.0.5" in why
    assert SECRET not in why


def test_an_unreachable_broker_is_named_by_readiness_and_its_log_lines_are_bounded(tmp_path: Path) -> None:
    broker, metrics_port = f"127.0.0.1:{free_port()}", free_port()
    stderr = tmp_path / "worker.log"
    with stderr.open("w") as handle:
        worker = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "--role", "embed", "--cpu"],
            env={
                **os.environ,
                "FACESTREAM_KAFKA__BOOTSTRAP_SERVERS": broker,
                "FACESTREAM_WORKER__METRICS_PORT": str(metrics_port),
            },
            stdout=subprocess.DEVNULL,
            stderr=handle,
        )
    try:
        wait_for(lambda: f"Kafka unreachable at {broker}" in http_get(metrics_port, "/readyz")[1], 30, "readiness")
        time.sleep(8)
        assert http_get(metrics_port, "/readyz")[0] == 503
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    lines = stderr.read_text().splitlines()
    assert len([line for line in lines if "facestream.kafka" in line]) <= LINES_PER_WINDOW
    assert len([line for line in lines if "not ready" in line]) <= 2


@pytest.mark.parametrize(
    "variable", ["FACESTREAM_KAFKA__SASL_PASSWORD", "FACESTREAM_WORKER__REDIS_PASWORD", "FACESTREAM_KAFKA__CLIENT"]
)
def test_a_misspelt_or_malformed_password_setting_is_refused_without_its_value(variable: str) -> None:
    command = [sys.executable, "-m", "workers.cli", "worker", "--role", "embed"]
    env = {**os.environ, variable: SECRET}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode != 0
    assert variable.split("__", maxsplit=1)[0].removeprefix("FACESTREAM_").lower() in done.stderr  # which part is wrong
    assert SECRET not in done.stdout + done.stderr
