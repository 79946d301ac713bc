"""The identity API of the cluster stage, and the console that uses it: HTTP on its own port, off unless
configured, every data route behind a bearer token.

    GET  /console/                                            the console (its page and assets: no data, no token)
    GET  /v1/openapi.json                                     this API's OpenAPI description (no data, no token)
    GET  /v1/spaces/<space>/identities[?limit=100&offset=0&name=part]   largest first; name: contains, any case
    GET  /v1/spaces/<space>/identities/<id>                   (an id merged away since names its cluster now)
    GET  /v1/spaces/<space>/identities/<id>/appearances[?camera=C&limit=20&offset=0]   where and when, newest first
    GET  /v1/spaces/<space>/faces/<face id>/thumbnail         the picture of a face its identity shows
    POST /v1/spaces/<space>/search   {"embedding": [512 floats] or base64 float32, "k": 5}
                                     or {"image": base64 of a JPEG, PNG, ... photo, "k": 5}
    POST /v1/spaces/<space>/commands {"type": "merge" | "split" | "reject" | "label" | "forget", ...}: 202

Identities are read from Redis, so any cluster worker answers them, writer or standby. A search needs the
space's index, which only its writer holds: another worker answers 409, saying so. An image is searched by its
largest face that passes the quality gate (422 when none does), with the detector and embedder of the
worker's model settings, loaded at the first image search. A command is a correction of the commands topic's
contract (docs/messages.md) without its ``command_id`` and ``space``, which the API gives it: it is sent to the
commands topic (a forget to the erasures topic, when there is one) and applied by the space's writer, in order
with the faces around it; the answer says it was delivered, and the identities topic says what it did.
These are biometric data: every data request needs ``Authorization: Bearer <token>`` (the token read from a
file); one without it, or with another, gets 401 and is counted (``facestream_api_unauthorized_total``).
Neither the token nor any request header is ever logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
from numpy.typing import NDArray

from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import RedisClient
from clustering.redis_state.redis_records import Sighting
from clustering.redis_state.space_reads import SpaceReads
from clustering.store import ClusterSummary
from workers.identity.console import console_asset
from workers.identity.identity_requests import RequestError
from workers.identity.identity_routes import CommandOutlet, IdentityReader, Reply, Routes
from workers.identity.openapi import openapi_document
from workers.plumbing import metrics
from workers.plumbing.http_limits import BackgroundServer, BadLengthError, LimitedHandler, content_length

if TYPE_CHECKING:
    from models.analyzer import FaceAnalyzer

log = logging.getLogger(__name__)

#: A photo as base64 fits (a 12 MB photo); an embedding needs far less.
MAX_BODY_BYTES = 16 << 20

#: The console's files (shipped in the package: nothing is fetched at run time) and their media types.
_CONSOLE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
#: The console runs only its own script, shows only its own and blob: pictures, and is never framed.
_CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
#: Answers with identities and faces are never kept by a browser or a proxy.
_DATA_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class WorkerIdentities:
    """What the API reads: identities from Redis (any worker), searches from the engines this worker writes."""

    def __init__(
        self,
        client: RedisClient,
        engines: Callable[[str], OnlineRankOrder | None],
        lock: threading.Lock,
        analyzer: Callable[[], FaceAnalyzer],
    ):
        """``engines``: the engine of a space this worker writes, or None; ``lock``: held while engines change;
        ``analyzer``: loads the models for image searches (called once, at the first)."""
        self.client = client
        self.engines = engines
        self.lock = lock
        self._load_analyzer = analyzer
        self._analyzer: FaceAnalyzer | None = None
        self._analyzer_lock = threading.Lock()

    def identities(self, space: str, offset: int, limit: int) -> tuple[int, list[ClusterSummary]]:
        return SpaceReads(self.client, space).largest_clusters(offset, limit)

    def named(self, space: str, part: str, offset: int, limit: int) -> tuple[int, list[ClusterSummary]]:
        return SpaceReads(self.client, space).named_clusters(part, offset, limit)

    def identity(self, space: str, cluster: int) -> ClusterSummary | None:
        return SpaceReads(self.client, space).cluster(cluster)

    def thumbnail(self, space: str, face_id: str) -> bytes | None:
        return SpaceReads(self.client, space).thumbnail(face_id)

    def timeline(
        self, space: str, cluster: int, camera: str | None, offset: int, limit: int
    ) -> tuple[int, list[Sighting]]:
        return SpaceReads(self.client, space).timeline(cluster, camera, offset, limit)

    def search(self, space: str, embedding: NDArray[np.float32], k: int) -> list[tuple[ClusterSummary, float]] | None:
        with self.lock:
            engine = self.engines(space)
            return None if engine is None else engine.nearest_clusters(embedding, k)

    def writes(self, space: str) -> bool:
        with self.lock:
            return self.engines(space) is not None

    def face_embedding(self, image: NDArray[np.uint8]) -> NDArray[np.float32] | None:
        from models.analyzer import largest_accepted  # noqa: PLC0415 - a worker without image searches loads no model

        with self._analyzer_lock:  # one model load, and one inference at a time beside the writer's work
            if self._analyzer is None:
                self._analyzer = self._load_analyzer()
            face = largest_accepted(self._analyzer.analyze([image])[0])
        return None if face is None else face.embedding


def console_file(path: str) -> Reply | None:
    """The console's page or asset at ``path``; None for a path that is not one."""
    route = urlsplit(path).path
    if route in ("/", "/console"):
        return Reply(b"", "text/plain", 308)
    if not route.startswith("/console/"):
        return None
    name = route.removeprefix("/console/") or "index.html"
    return Reply(console_asset(name), _CONSOLE_FILES[name]) if name in _CONSOLE_FILES else None


class IdentityApi:
    """The API's HTTP server, on a daemon thread."""

    def __init__(
        self, reader: IdentityReader, commands: CommandOutlet, host: str, port: int, *, token: str, dimension: int
    ) -> None:
        if not token:
            raise ValueError("the identity API needs a bearer token (FACESTREAM_WORKER__API_TOKEN_FILE)")
        route = Routes(reader, commands, dimension)
        description = Reply(json.dumps(openapi_document(dimension)).encode())
        expected = f"Bearer {token}".encode()

        class Handler(LimitedHandler):
            def do_GET(self) -> None:
                if urlsplit(self.path).path == "/v1/openapi.json":
                    self._send(description, {"Cache-Control": "no-cache"})
                    return
                page = console_file(self.path)
                if page is not None:
                    location = {"Location": "/console/"} if page.status == 308 else {}
                    self._send(page, {**_CONSOLE_HEADERS, **location})
                    return
                self._answer(lambda: route.get(self.path))

            def do_POST(self) -> None:
                self._answer(lambda: route.post(self.path, self._body()))

            def _not_allowed(self) -> None:
                self.close_connection = True  # a body, if any, is not read
                refused = Reply.json({"error": f"{self.command[:20]} is not a method of this API"}, 405)
                self._send(refused, {**_DATA_HEADERS, "Allow": "GET, POST"})

            def __getattr__(self, name: str) -> Any:
                # http.server answers a method it finds no do_<METHOD> for with a 501, a server error: every
                # method but GET and POST is the client's mistake here, and is answered so.
                if name.startswith("do_"):
                    return self._not_allowed
                raise AttributeError(name)

            def _answer(self, handle: Callable[[], Reply]) -> None:
                given = self.headers.get("Authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    metrics.API_UNAUTHORIZED.inc()
                    refused = Reply.json({"error": "a valid bearer token is required"}, 401)
                    self._send(refused, {**_DATA_HEADERS, "WWW-Authenticate": "Bearer"})
                    return
                try:
                    self._send(handle(), _DATA_HEADERS)
                except RequestError as exc:
                    self._send(Reply.json({"error": str(exc)}, exc.status), _DATA_HEADERS)
                except Exception:
                    log.exception("identity API: %s %s failed", self.command, urlsplit(self.path).path)
                    self._send(Reply.json({"error": "internal error; see the worker's log"}, 500), _DATA_HEADERS)

            def _body(self) -> Any:
                try:
                    length = content_length(self.headers.get("Content-Length"), MAX_BODY_BYTES)
                except BadLengthError as exc:
                    self.close_connection = True  # the body, if any, is not read
                    raise RequestError(exc.status, str(exc)) from exc
                try:
                    data = self.rfile.read(length)
                except TimeoutError as exc:
                    self.close_connection = True
                    raise RequestError(408, f"the body did not arrive within {self.timeout:.0f} s") from exc
                try:
                    return json.loads(data or b"null")
                except ValueError as exc:
                    raise RequestError(400, f"the body is not JSON: {exc}") from exc

            def _send(self, reply: Reply, headers: dict[str, str]) -> None:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)
                metrics.API_REQUESTS.labels(str(reply.status)).inc()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request line may name a space; nothing else is logged, never a header

        self._http = BackgroundServer(host, port, Handler, "identity-api")
        self.port = self._http.port

    def start(self) -> IdentityApi:
        self._http.start()
        log.info("serving the identity API and its console on %s:%d (/console/)", self._http.host, self.port)
        return self

    def stop(self) -> None:
        self._http.stop()
