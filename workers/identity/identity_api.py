"""The identity API of the cluster stage: JSON over HTTP, its own port, off unless configured, a bearer token.

    GET  /v1/spaces/<space>/identities[?limit=100&offset=0]   largest first
    GET  /v1/spaces/<space>/identities/<id>                   (an id merged away since names its cluster now)
    POST /v1/spaces/<space>/search   {"embedding": [512 floats] or base64 float32, "k": 5}
                                     or {"image": base64 of a JPEG, PNG, ... photo, "k": 5}

Identities are read from Redis, so any cluster worker answers them, writer or standby. A search needs the
space's index, which only its writer holds: another worker answers 409, saying so. An image is searched by its
largest face that passes the quality gate (422 when none does), with the detector and embedder of the
worker's model settings, loaded at the first image search. These are biometric data:
every request needs ``Authorization: Bearer <token>`` (the token read from a file); one without it, or with
another, gets 401 and is counted (``facestream_api_unauthorized_total``). Neither the token nor any request
header is ever logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np
from numpy.typing import NDArray

from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import RedisClient
from clustering.redis_state.redis_store import RedisStore
from clustering.store import ClusterSummary
from workers.identity.identity_requests import (
    RequestError,
    identity_json,
    not_the_writer,
    query_number,
    request_embedding,
    request_image,
    request_space,
)
from workers.plumbing import metrics
from workers.plumbing.http_limits import BackgroundServer, BadLengthError, LimitedHandler, content_length

if TYPE_CHECKING:
    from models.analyzer import FaceAnalyzer

log = logging.getLogger(__name__)

#: A photo as base64 fits (a 12 MB photo); an embedding needs far less.
MAX_BODY_BYTES = 16 << 20
MAX_K = 100


class IdentityReader(Protocol):
    def identities(self, space: str, offset: int, limit: int) -> tuple[int, list[ClusterSummary]]:
        """How many identities the space has, and ``limit`` of them from ``offset``, largest first."""
        ...

    def identity(self, space: str, cluster: int) -> ClusterSummary | None: ...

    def search(self, space: str, embedding: NDArray[np.float32], k: int) -> list[tuple[ClusterSummary, float]] | None:
        """None when this worker does not write ``space``."""
        ...

    def writes(self, space: str) -> bool:
        """Whether this worker writes ``space`` now (only its writer can search it)."""
        ...

    def face_embedding(self, image: NDArray[np.uint8]) -> NDArray[np.float32] | None:
        """The embedding of the largest face of ``image`` that passes the quality gate; None when none does."""
        ...


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
        return RedisStore(self.client, space).largest_clusters(offset, limit)

    def identity(self, space: str, cluster: int) -> ClusterSummary | None:
        return RedisStore(self.client, space).cluster(cluster)

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


class IdentityApi:
    """The API's HTTP server, on a daemon thread."""

    def __init__(self, reader: IdentityReader, host: str, port: int, token: str, dimension: int) -> None:
        if not token:
            raise ValueError("the identity API needs a bearer token (FACESTREAM_WORKER__API_TOKEN_FILE)")
        route = _Routes(reader, dimension)
        expected = f"Bearer {token}".encode()

        class Handler(LimitedHandler):
            def do_GET(self) -> None:
                self._answer(lambda: route.get(self.path))

            def do_POST(self) -> None:
                self._answer(lambda: route.post(self.path, self._body()))

            def _answer(self, handle: Callable[[], dict[str, Any]]) -> None:
                given = self.headers.get("Authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    metrics.API_UNAUTHORIZED.inc()
                    self._send(401, {"error": "a valid bearer token is required"}, {"WWW-Authenticate": "Bearer"})
                    return
                try:
                    self._send(200, handle())
                except RequestError as exc:
                    self._send(exc.status, {"error": str(exc)})
                except Exception:
                    log.exception("identity API: %s %s failed", self.command, urlsplit(self.path).path)
                    self._send(500, {"error": "internal error; see the worker's log"})

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

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                metrics.API_REQUESTS.labels(str(status)).inc()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request line may name a space; nothing else is logged, never a header

        self._http = BackgroundServer(host, port, Handler, "identity-api")
        self.port = self._http.port

    def start(self) -> IdentityApi:
        self._http.start()
        log.info("serving the identity API on %s:%d", self._http.host, self.port)
        return self

    def stop(self) -> None:
        self._http.stop()


class _Routes:
    def __init__(self, reader: IdentityReader, dimension: int) -> None:
        self.reader = reader
        self.dimension = dimension
        self._image_slot = threading.Lock()

    def get(self, path: str) -> dict[str, Any]:
        parts = urlsplit(path)
        segments = parts.path.strip("/").split("/")
        if len(segments) in (4, 5) and segments[:2] == ["v1", "spaces"] and segments[3] == "identities":
            space = request_space(segments[2])
            if len(segments) == 5:
                return self._one(space, segments[4])
            query = parse_qs(parts.query)
            limit, offset = query_number(query, "limit", 100), query_number(query, "offset", 0)
            total, page = self.reader.identities(space, offset, limit)
            return {"space": space, "total": total, "identities": [identity_json(s) for s in page]}
        raise RequestError(404, "not found: GET /v1/spaces/<space>/identities[/<id>]")

    def _one(self, space: str, raw_id: str) -> dict[str, Any]:
        if not raw_id.isdigit():
            raise RequestError(400, "an identity id is a non-negative integer")
        summary = self.reader.identity(space, int(raw_id))
        if summary is None:
            raise RequestError(404, f"no identity {raw_id} in space {space}")
        return {"space": space, "identity": identity_json(summary)}

    def post(self, path: str, body: Any) -> dict[str, Any]:
        segments = urlsplit(path).path.strip("/").split("/")
        if len(segments) != 4 or segments[:2] != ["v1", "spaces"] or segments[3] != "search":
            raise RequestError(404, "not found: POST /v1/spaces/<space>/search")
        space = request_space(segments[2])
        if not isinstance(body, dict) or len({"embedding", "image"} & body.keys()) != 1:
            raise RequestError(400, 'the body is {"embedding": ..., "k": 5} or {"image": ..., "k": 5}')
        k = body.get("k", 5)
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise RequestError(400, f"k is an integer from 1 to {MAX_K}")
        if "image" in body:
            if not self.reader.writes(space):  # before any model is loaded or run for nothing
                raise not_the_writer(space)
            # One image at a time: each may take a few hundred MB to decode, inside the cluster worker.
            if not self._image_slot.acquire(blocking=False):
                raise RequestError(503, "another image search is running; try again in a moment")
            try:
                embedding = self.reader.face_embedding(request_image(body["image"]))
            finally:
                self._image_slot.release()
            if embedding is None:
                raise RequestError(422, "no face in the image passed the quality gate")
        else:
            embedding = request_embedding(body["embedding"], self.dimension)
        matches = self.reader.search(space, embedding, k)
        if matches is None:
            raise not_the_writer(space)
        return {
            "space": space,
            "matches": [
                {"similarity": round(similarity, 6), "identity": identity_json(summary)}
                for summary, similarity in matches
            ],
        }
