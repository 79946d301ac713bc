"""The workers' HTTP servers against real slow and malformed clients, over real sockets: a client that stops
sending is dropped, connections beyond the cap are refused at once without a thread, a Content-Length that
is not a count of bytes is refused without reading a body, and the server answers again afterwards."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from numpy.typing import NDArray

from clustering.redis_state.redis_records import Sighting
from clustering.store import ClusterSummary
from streaming.commands import Command
from tests.local_services import http_get
from workers.identity.command_sender import CommandNotSentError
from workers.identity.identity_api import MAX_BODY_BYTES, IdentityApi
from workers.plumbing.http_limits import BoundedHTTPServer, LimitedHandler
from workers.plumbing.metrics import Health, HealthServer

TOKEN = "limits-token"


class _Hello(LimitedHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _serving(server: BoundedHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _answer(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_client_that_stops_sending_is_dropped_after_the_timeout() -> None:
    with _serving(BoundedHTTPServer(("127.0.0.1", 0), _Hello, client_timeout_s=1.0)) as port:
        stalled = _connect(port)
        stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the request is never finished
        started = time.monotonic()
        assert _answer(stalled) == b""  # closed by the server, with nothing to say
        assert time.monotonic() - started < 5
        assert http_get(port, "/") == (200, "hello")


def test_connections_beyond_the_cap_are_refused_at_once_and_the_server_recovers() -> None:
    server = BoundedHTTPServer(("127.0.0.1", 0), _Hello, max_connections=4, client_timeout_s=2.0)
    with _serving(server) as port:
        threads_before = threading.active_count()
        holding = [_connect(port) for _ in range(4)]
        for sock in holding:
            sock.sendall(b"GET / HTTP/1.1\r\n")  # half a request each: four handler threads wait
        time.sleep(0.3)
        refused = [_answer(_connect(port)) for _ in range(20)]
        assert all(answer.startswith(b"HTTP/1.1 503") for answer in refused)
        assert server.refused == 20
        assert threading.active_count() <= threads_before + 4
        for sock in holding:
            sock.close()
        time.sleep(0.3)
        assert http_get(port, "/") == (200, "hello")


class _NoIdentities:
    """The API's data side, empty: these tests are about its HTTP side."""

    def identities(self, space: str, offset: int, limit: int) -> tuple[int, list[ClusterSummary]]:
        return 0, []

    def named(self, space: str, part: str, offset: int, limit: int) -> tuple[int, list[ClusterSummary]]:
        return 0, []

    def identity(self, space: str, cluster: int) -> ClusterSummary | None:
        return None

    def thumbnail(self, space: str, face_id: str) -> bytes | None:
        return None

    def timeline(
        self, space: str, cluster: int, camera: str | None, offset: int, limit: int
    ) -> tuple[int, list[Sighting]]:
        return 0, []

    def search(self, space: str, embedding: NDArray[np.float32], k: int) -> list[tuple[ClusterSummary, float]] | None:
        return []

    def writes(self, space: str) -> bool:
        return True

    def face_embedding(self, image: NDArray[np.uint8]) -> NDArray[np.float32] | None:
        return None

    def send(self, command: Command) -> str:
        raise CommandNotSentError("these tests send no command")


def _post(port: int, length: str, body: bytes = b"") -> tuple[int, dict[str, object]]:
    with _connect(port) as sock:
        head = (
            f"POST /v1/spaces/s/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        answer = _answer(sock)
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1])


def test_a_content_length_that_is_not_a_count_of_bytes_is_refused_without_reading_the_body() -> None:
    api = IdentityApi(_NoIdentities(), _NoIdentities(), "127.0.0.1", 0, token=TOKEN, dimension=4).start()
    try:
        for length in ("-1", "+5", "abc", "1e3", "١٢"):
            status, refusal = _post(api.port, length, b'{"embedding": [1, 0, 0, 0]}')
            assert status == 400, (length, refusal)
            assert "Content-Length" in str(refusal["error"])
        assert _post(api.port, str(MAX_BODY_BYTES + 1))[0] == 413
        body = b'{"embedding": [1, 0, 0, 0], "k": 1}'
        assert _post(api.port, str(len(body)), body) == (200, {"space": "s", "matches": []})
    finally:
        api.stop()


def test_the_metrics_server_refuses_what_it_cannot_hold_and_keeps_answering() -> None:
    server = HealthServer([Health("embed")], "127.0.0.1", 0).start()
    try:
        stalled = [_connect(server.port) for _ in range(40)]  # more than it handles at once, none finishing
        time.sleep(0.3)
        assert threading.active_count() < 60
        for sock in stalled:
            sock.close()
        time.sleep(0.3)
        assert http_get(server.port, "/metrics")[0] == 200
    finally:
        server.stop()
