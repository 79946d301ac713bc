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

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import RedisClient
from clustering.redis_state.redis_records import Sighting
from clustering.redis_state.space_reads import SpaceReads
from clustering.store import ClusterSummary
from workers.identity.identity_app import MAX_BODY_BYTES, identity_app
from workers.identity.identity_routes import CommandOutlet, IdentityReader, Routes
from workers.plumbing.http_server import BackgroundServer

if TYPE_CHECKING:
    from models.analyzer import FaceAnalyzer

log = logging.getLogger(__name__)


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


class IdentityApi:
    """The API and its console served on ``host``:``port`` (workers/plumbing/http_server.py), on a daemon thread."""

    def __init__(
        self, reader: IdentityReader, commands: CommandOutlet, host: str, port: int, *, token: str, dimension: int
    ) -> None:
        if not token:
            raise ValueError("the identity API needs a bearer token (FACESTREAM_WORKER__API_TOKEN_FILE)")
        app = identity_app(Routes(reader, commands, dimension), token, dimension)
        self._http = BackgroundServer(app, host, port, "identity-api", max_body_bytes=MAX_BODY_BYTES)
        self.port = self._http.port

    def start(self) -> IdentityApi:
        self._http.start()
        log.info("serving the identity API and its console on %s:%d (/console/)", self._http.host, self.port)
        return self

    def stop(self) -> None:
        self._http.stop()
