"""The workers' HTTP servers against real slow clients, over real sockets: a client that stops sending is
dropped, clients that send slowly hold no thread, connections beyond the cap wait without a thread and are
answered once others end, and the server answers again afterwards."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tests.local_services import http_get, read_until_closed
from workers.plumbing.http_server import BackgroundServer
from workers.plumbing.metrics import Health, HealthServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def _hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Length", "5")])
    return [b"hello"]


@contextmanager
def _serving(**limits: float) -> Iterator[int]:
    server = BackgroundServer(_hello, "127.0.0.1", 0, "test-http", **limits)  # type: ignore[arg-type]
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_a_client_that_stops_sending_is_dropped_after_the_timeout() -> None:
    with _serving(client_timeout_s=1.0) as port:
        stalled = _connect(port)
        stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the request is never finished
        started = time.monotonic()
        assert read_until_closed(stalled) == b""  # closed by the server, with nothing to say
        assert time.monotonic() - started < 5
        assert http_get(port, "/") == (200, "hello")


def test_slow_clients_hold_no_thread_and_connections_beyond_the_cap_wait_for_a_free_one() -> None:
    with _serving(max_connections=4, client_timeout_s=30.0) as port:
        assert http_get(port, "/") == (200, "hello")  # the server's threads are started
        threads_before = threading.active_count()
        holding = [_connect(port) for _ in range(4)]
        for sock in holding:
            sock.sendall(b"GET / HTTP/1.1\r\n")  # half a request each, then nothing
        time.sleep(0.3)
        waiting = [_connect(port) for _ in range(20)]  # queued by the kernel: the server accepts no more now
        for sock in waiting:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)
        assert threading.active_count() <= threads_before
        for sock in holding:
            sock.close()
        answers = [read_until_closed(sock) for sock in waiting]
        assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers)
        assert http_get(port, "/") == (200, "hello")


def test_the_metrics_server_holds_silent_clients_without_threads_and_keeps_answering() -> None:
    server = HealthServer([Health("embed")], "127.0.0.1", 0).start()
    try:
        assert http_get(server.port, "/metrics")[0] == 200
        threads_before = threading.active_count()
        stalled = [_connect(server.port) for _ in range(40)]  # more than it holds at once, none finishing
        time.sleep(0.3)
        assert threading.active_count() == threads_before
        for sock in stalled:
            sock.close()
        time.sleep(0.3)
        assert http_get(server.port, "/metrics")[0] == 200
    finally:
        server.stop()
