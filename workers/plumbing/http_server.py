"""How every HTTP endpoint of the workers is served (the identity API and its console, /metrics and the probes):
a WSGI application on waitress, from a daemon thread, with limits so that no client can stop a stage through it.

Waitress reads each request whole (line, headers and body) in its one event loop before a worker thread sees
it, so a client that sends slowly or not at all holds no thread; one that stays silent for the client timeout
is dropped. Past the connection cap the server stops accepting (new clients wait in the listen backlog) until a
connection ends. A Content-Length that is not a count of bytes is a 400, and one over the body limit a 413,
before any body is read.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

from waitress import wasyncore
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger(__name__)

#: Seconds a connection may stay silent (mid-request, or idle between requests) before it is dropped.
CLIENT_TIMEOUT_S = 10.0
#: Connections held at once by one server; Prometheus, probes and a few API clients need far fewer.
MAX_CONNECTIONS = 32
#: Threads answering complete requests; reading and writing them is the event loop's.
HANDLER_THREADS = 4
#: How long the event loop waits for sockets before it looks at the stop flag again.
_POLL_S = 0.2


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``'s first address (IPv4 or IPv6) and ``port`` (0: any free one)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


class BackgroundServer:
    """``app`` served on ``host``:``port`` from a daemon thread named ``name``: the one way the workers' HTTP
    endpoints are served, started and stopped."""

    def __init__(
        self,
        app: WSGIApplication,
        host: str,
        port: int,
        name: str,
        *,
        max_body_bytes: int = 1 << 20,
        max_connections: int = MAX_CONNECTIONS,
        client_timeout_s: float = CLIENT_TIMEOUT_S,
    ) -> None:
        self._map: dict[int, Any] = {}  # the event loop's sockets by descriptor
        sock = _listening_socket(host, port)
        server = create_server(
            app,
            map=self._map,
            sockets=[sock],
            threads=HANDLER_THREADS,
            connection_limit=max_connections,
            channel_timeout=client_timeout_s,
            # How often silent connections are looked for: a tenth of the timeout, so one is dropped on time.
            cleanup_interval=max(client_timeout_s / 10, 0.1),
            max_request_body_size=max_body_bytes,
            ident="facestream",
            clear_untrusted_proxy_headers=True,
            expose_tracebacks=False,
        )
        assert not isinstance(server, MultiSocketServer)  # one socket given, one server
        self._server: BaseWSGIServer = server
        self.host, self.port = str(sock.getsockname()[0]), int(sock.getsockname()[1])
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops accepting, lets requests in progress end (up to 5 s) and closes every connection."""
        self._stopping.set()
        if self._thread.is_alive():
            self._server.pull_trigger()  # wakes the event loop now rather than at its next poll
            self._thread.join()
        else:
            self._close()

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=_POLL_S, map=self._map, count=1)
        finally:
            self._close()

    def _close(self) -> None:
        # Everything is closed by the loop's own thread (wasyncore's map is not shared between threads).
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._map)
