"""What the workers export to Prometheus, and the process's health as /healthz and /readyz report it.

Labels stay low-cardinality: topics, stages, reasons and roles, never faces, clusters or cameras.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from werkzeug.exceptions import HTTPException

from streaming.redact import redact
from workers.plumbing.http_server import BackgroundServer

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

MESSAGES_CONSUMED = Counter("facestream_messages_consumed", "Messages read from Kafka.", ["topic"])
MESSAGES_PRODUCED = Counter("facestream_messages_produced", "Messages acknowledged by Kafka.", ["topic"])
FRAMES = Counter("facestream_frames", "Frames analysed by embed workers (decoded whole only where detected).")
FACES_DETECTED = Counter("facestream_faces_detected", "Faces in frames, detected or carried by the tracker.")
FRAMES_DETECTED = Counter("facestream_frames_detected", "Frames the detector ran on (the others were tracked).")
FRAMES_SKIPPED = Counter(
    "facestream_frames_skipped", "Frames replayed after a crash that a former owner had already reported."
)
FACES_EMBEDDED = Counter("facestream_faces_embedded", "Faces embedded (a track's first, then a few).")
TRACK_RESETS = Counter("facestream_track_resets", "Times every track of a camera ended at once, by why.", ["reason"])
APPEARANCES = Counter("facestream_appearances", "Appearances (tracks) attributed to an identity and published.")
FACES_REJECTED = Counter("facestream_faces_rejected", "Detected faces refused by the quality gate.", ["reason"])
FACES_CLUSTERED = Counter("facestream_faces_clustered", "Faces applied to the clustering state.")
DUPLICATE_FACES = Counter("facestream_duplicate_faces", "Face records seen again (a replay) and ignored.")
MERGES = Counter("facestream_merges", "Clusters absorbed into older ones.")
API_REQUESTS = Counter("facestream_api_requests", "Identity API requests answered, by HTTP status.", ["status"])
API_UNAUTHORIZED = Counter(
    "facestream_api_unauthorized", "Identity API requests refused for a missing or wrong bearer token."
)
CORRECTIONS = Counter(
    "facestream_corrections",
    "Corrections applied, by outcome: merged, split, labelled, or conflict (changed nothing).",
    ["outcome"],
)
CLUSTERS = Gauge("facestream_clusters", "Clusters in the identity spaces this worker writes.")
DEAD_LETTERS = Counter("facestream_dead_letters", "Messages sent to the dead-letter topic.", ["stage", "reason"])
STAGE_SECONDS = Histogram(
    "facestream_stage_seconds", "Seconds per batch spent in each stage.", ["stage"], buckets=_LATENCY_BUCKETS
)
BATCH_SIZE = Histogram(
    "facestream_batch_size", "Messages per consumed batch.", ["role"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
)
CONSUMER_LAG = Gauge("facestream_consumer_lag", "Messages behind the end of the log, from librdkafka.", ["topic"])
REDIS_SECONDS = Histogram(
    "facestream_redis_seconds", "Seconds per Redis call.", ["operation"], buckets=_LATENCY_BUCKETS
)
_LONG_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
RESTORE_SECONDS = Histogram(
    "facestream_restore_seconds", "Seconds a writer took to rebuild its space from Redis.", buckets=_LONG_BUCKETS
)
SNAPSHOT_SECONDS = Histogram(
    "facestream_snapshot_seconds",
    "Seconds to build and store an index snapshot (off the writer).",
    buckets=_LONG_BUCKETS,
)
SNAPSHOT_FACES = Gauge("facestream_snapshot_faces", "Faces covered by the latest index snapshot this writer stored.")
REDIS_ERRORS = Counter("facestream_redis_errors", "Redis calls that failed (the worker waits and recovers).")
KAFKA_ERRORS = Counter("facestream_kafka_errors", "Kafka errors reported to the worker.", ["role"])
RECOVERIES = Counter(
    "facestream_recoveries", "Times a worker was working again after a failure (one per failure).", ["role"]
)
RECOVERY_ATTEMPTS = Counter(
    "facestream_recovery_attempts", "Tries to rebuild after a failure (many while a service stays down).", ["role"]
)
READY = Gauge("facestream_ready", "1 while the worker is able to do its work.", ["role"])
WRITER = Gauge("facestream_writer", "Identity spaces this process writes (holds the writer lease of).")


def record_lag(stats: dict[str, Any]) -> None:
    """Consumer lag summed per topic over the partitions this process owns, from librdkafka's statistics."""
    for topic, data in stats.get("topics", {}).items():
        lags = [p.get("consumer_lag", -1) for name, p in data.get("partitions", {}).items() if name != "-1"]
        known = [lag for lag in lags if lag >= 0]
        if known:
            CONSUMER_LAG.labels(topic).set(sum(known))


class Health:
    """Liveness (the loop is turning) and readiness (its dependencies answer) of one worker role."""

    def __init__(self, role: str, stall_s: float = 120.0) -> None:
        self.role = role
        self.stall_s = stall_s
        self._beat = time.monotonic()
        self._ready = False
        self._why = "starting"
        #: A condition outside the stage (Kafka unreachable, credentials refused) that holds it not-ready,
        #: whatever the stage's own loop reports, until it clears.
        self._blocked: str | None = None
        READY.labels(role).set(0)

    def beat(self) -> None:
        self._beat = time.monotonic()

    def ready(self) -> None:
        if not self._ready:
            log.info("%s worker ready", self.role)
        self._ready, self._why = True, ""
        READY.labels(self.role).set(int(self._blocked is None))
        self.beat()

    def standby(self, why: str) -> None:
        """Healthy and ready, but waiting: a standby cluster worker (ready, so no alert and no restart)."""
        why = redact(why)
        if not self._ready or why != self._why:
            log.info("%s worker on standby: %s", self.role, why)
        self._ready, self._why = True, why
        READY.labels(self.role).set(int(self._blocked is None))
        self.beat()

    def not_ready(self, why: str) -> None:
        why = redact(why)  # shown on /readyz
        if self._ready or why != self._why:
            log.warning("%s worker not ready: %s", self.role, why)
        self._ready, self._why = False, why
        READY.labels(self.role).set(0)
        self.beat()

    def block(self, why: str) -> None:
        """Not ready because of ``why`` until ``unblock``, whatever the stage's loop says meanwhile."""
        why = redact(why)
        if why != self._blocked:
            log.warning("%s worker not ready: %s", self.role, why)
        self._blocked = why
        READY.labels(self.role).set(0)

    def unblock(self, reason: str) -> None:
        """Clears a block whose reason starts with ``reason``."""
        if self._blocked is not None and self._blocked.startswith(reason):
            log.info("%s worker: no longer %s", self.role, self._blocked)
            self._blocked = None
            READY.labels(self.role).set(int(self._ready))

    @property
    def live(self) -> bool:
        return time.monotonic() - self._beat < self.stall_s

    def report(self) -> tuple[bool, str]:
        if self._blocked is not None:
            return False, self._blocked
        return self._ready, self._why or "ready"


class HealthServer:
    """/metrics, /healthz and /readyz on one port, served from a daemon thread."""

    def __init__(
        self, roles: list[Health], host: str, port: int, pages: Mapping[str, Callable[[], bytes]] | None = None
    ) -> None:
        """``pages``: more JSON pages, by path (the producer's /cameras)."""
        self._http = BackgroundServer(health_app(roles, pages or {}), host, port, "health-http")
        self.port = self._http.port

    def start(self) -> HealthServer:
        self._http.start()
        log.info("serving /metrics, /healthz and /readyz on port %d", self.port)
        return self

    def stop(self) -> None:
        self._http.stop()


def health_app(roles: list[Health], pages: Mapping[str, Callable[[], bytes]]) -> Flask:
    """The health port's pages: Prometheus' exposition, liveness, readiness and ``pages`` (JSON, by path)."""
    app = Flask(__name__, static_folder=None)
    plain = "text/plain; charset=utf-8"

    @app.get("/metrics")
    def exposition() -> Response:
        return Response(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def live() -> Response:
        stalled = [h.role for h in roles if not h.live]
        body = f"stalled: {', '.join(stalled)}" if stalled else "ok"
        return Response(body, 503 if stalled else 200, content_type=plain)

    @app.get("/readyz")
    def ready() -> Response:
        reports = {h.role: h.report() for h in roles}
        ready = all(ok for ok, _ in reports.values())
        body = "; ".join(f"{role}: {why}" for role, (_, why) in reports.items())
        return Response(body, 200 if ready else 503, content_type=plain)

    for path, page in pages.items():
        app.add_url_rule(path, path, lambda page=page: Response(page(), content_type="application/json"))

    @app.errorhandler(HTTPException)
    def refused(exc: HTTPException) -> Response:
        hint = f"not found: try /metrics, /healthz, /readyz {' '.join(pages)}"
        return Response(hint if exc.code == 404 else str(exc.description), exc.code or 500, content_type=plain)

    return app
