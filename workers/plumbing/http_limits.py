"""What every HTTP server of the workers shares, so that no client can stop a stage through it: a socket
timeout on every connection (a client that stops sending is dropped), a bounded number of connections handled
at once (one more is answered 503 and closed by the accepting thread, which starts no thread for it), and a
strict Content-Length."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workers.errors import WorkerError

log = logging.getLogger(__name__)

#: Seconds a connection may wait for its client's next bytes (of the request line, a header or the body).
CLIENT_TIMEOUT_S = 10.0
#: Connections handled at once by one server; Prometheus, probes and a few API clients need far fewer.
MAX_CONNECTIONS = 32

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 31\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections; try again"
)


class BadLengthError(WorkerError, ValueError):
    """A Content-Length that is not a count of bytes, or one over the limit."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def content_length(raw: str | None, limit: int) -> int:
    """The body's size from its Content-Length header: digits only (no sign, no blanks), at most ``limit``."""
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit():
        raise BadLengthError(400, f"Content-Length must be a count of bytes, not {raw[:20]!r}")
    length = int(raw)
    if length > limit:
        raise BadLengthError(413, f"a request body has at most {limit} bytes")
    return length


class LimitedHandler(BaseHTTPRequestHandler):
    """A request handler whose connection times out when its client stops sending."""

    timeout = CLIENT_TIMEOUT_S


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[LimitedHandler],
        max_connections: int = MAX_CONNECTIONS,
        client_timeout_s: float = CLIENT_TIMEOUT_S,
    ) -> None:
        timed = type(handler.__name__, (handler,), {"timeout": client_timeout_s})
        super().__init__(address, timed)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._limit = max_connections
        self.refused = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            if _power_of_ten(self.refused):
                log.warning(
                    "HTTP on port %d: %d connection(s) refused, %d at once already",
                    self.server_address[1],
                    self.refused,
                    self._limit,
                )
            _answer_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread started: the slot is free again
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _answer_busy(request: socket.socket) -> None:
    try:
        request.settimeout(1.0)
        request.sendall(_BUSY)
    except OSError:
        pass  # a client that does not read its refusal is simply dropped


def _power_of_ten(count: int) -> bool:
    while count % 10 == 0:
        count //= 10
    return count == 1


class BackgroundServer:
    """A BoundedHTTPServer serving ``handler`` from a daemon thread named ``name``: the one way the workers'
    HTTP endpoints (health and metrics, the identity API) are served, started and stopped."""

    def __init__(self, host: str, port: int, handler: type[LimitedHandler], name: str) -> None:
        self._server = BoundedHTTPServer((host, port), handler)
        self.host = str(self._server.server_address[0])
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops serving and closes the listening socket (requests in progress finish on their threads)."""
        self._server.shutdown()
        self._server.server_close()
