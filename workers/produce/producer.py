"""`facestream produce` as a process an operator watches: the readers, the frames topic, and /metrics,
/healthz and /readyz about the cameras.

Per-camera state is not a Prometheus label (a site may have thousands of cameras, and a label per camera is
a time series per camera for every metric): the metrics count cameras by state and give the age of the
stalest camera's newest frame, /readyz names the cameras that are not connected, and /cameras lists every
camera's state and counts as JSON, read when someone asks rather than stored for every scrape. Each drop and each
reconnection is one log line with the camera id and the reason, so a log search answers "which camera".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from streaming.produce import ProduceSummary, produce_frames
from streaming.read_policy import CameraStatus, ReaderState
from streaming.settings import KafkaSettings, SourceSettings
from workers.plumbing.metrics import Health, HealthServer
from workers.produce.source_readers import PlannedReaders

log = logging.getLogger(__name__)

#: Cameras named on /readyz at most; the rest are counted.
SHOWN_CAMERAS = 10


class ProducerCollector(Collector):
    """The producer's metrics, read from the readers' state at each scrape."""

    def __init__(self, statuses: Callable[[], list[CameraStatus]], summary: ProduceSummary) -> None:
        self._statuses, self._summary = statuses, summary

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        statuses = self._statuses()
        cameras = GaugeMetricFamily("facestream_producer_cameras", "Sources by state.", labels=["state"])
        for state in ReaderState:
            cameras.add_metric([state.value], sum(s.state is state for s in statuses))
        yield cameras
        yield _counter("facestream_producer_connections", "Connections made to sources (the first and every "
                       "reconnection).", sum(s.connections for s in statuses))  # fmt: skip
        yield _counter("facestream_producer_drops", "Times a live source dropped (closed, hung, refused).",
                       sum(s.drops for s in statuses))  # fmt: skip
        yield _counter("facestream_producer_frames_read", "Frames read from sources.", sum(s.frames for s in statuses))
        dropped = CounterMetricFamily(
            "facestream_producer_frames_dropped",
            "Frames read and not sent: stale (a newer frame of the camera was waiting, or decoding fell behind), "
            "over max_fps, or kafka_backlog (Kafka's send queue full: the broker unreachable for long).",
            labels=["reason"],
        )
        dropped.add_metric(["stale"], sum(s.dropped_stale for s in statuses))
        dropped.add_metric(["rate"], sum(s.dropped_rate for s in statuses))
        dropped.add_metric(["kafka_backlog"], self._summary.dropped_backlog)
        yield dropped
        yield _counter("facestream_producer_frames_sent", "Frames handed to Kafka.", self._summary.frames)
        yield _counter("facestream_producer_bytes_sent", "JPEG bytes handed to Kafka.", self._summary.bytes)
        yield _counter("facestream_producer_frames_undelivered", "Frames Kafka did not take.", self._summary.failed)
        age = GaugeMetricFamily(
            "facestream_producer_stalest_frame_age_seconds",
            "Seconds since the newest frame of the live camera that has gone longest without one.",
        )
        age.add_metric(
            [], max((time.monotonic() - s.last_frame for s in statuses if s.live and s.last_frame), default=0)
        )
        yield age


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


class ProducerHealth(Health):
    """Ready while at least one source gives frames; /readyz names the cameras that do not."""

    def __init__(self, statuses: Callable[[], list[CameraStatus]]) -> None:
        super().__init__("produce")
        self._statuses = statuses

    def report(self) -> tuple[bool, str]:
        statuses = self._statuses()
        down = [s for s in statuses if s.live and s.state is not ReaderState.CONNECTED]
        connected = sum(s.state is ReaderState.CONNECTED for s in statuses)
        shown = ", ".join(f"{s.camera} ({s.state.value}: {s.error or 'no frame yet'})" for s in down[:SHOWN_CAMERAS])
        more = f" and {len(down) - SHOWN_CAMERAS} more" if len(down) > SHOWN_CAMERAS else ""
        why = f"{connected} of {len(statuses)} sources connected" + (f"; not connected: {shown}{more}" if down else "")
        return connected > 0 or not any(s.live for s in statuses), why


def cameras_page(statuses: list[CameraStatus]) -> bytes:
    """/cameras: every source's state, one JSON object each, sorted by camera id: what no metric label shows."""
    now = time.monotonic()
    cameras = [
        {
            "camera": s.camera,
            "live": s.live,
            "state": s.state.value,
            "session": s.session,
            "connections": s.connections,
            "drops": s.drops,
            "frames_read": s.frames,
            "dropped_stale": s.dropped_stale,
            "dropped_rate": s.dropped_rate,
            "last_frame_age_s": None if s.last_frame is None else round(now - s.last_frame, 3),
            "error": s.error,
        }
        for s in sorted(statuses, key=lambda status: status.camera)
    ]
    return json.dumps({"cameras": cameras}).encode()


def run_producer(
    planned: PlannedReaders,
    kafka: KafkaSettings,
    options: SourceSettings,
    *,
    progress: bool,
    should_stop: Callable[[], bool],
) -> ProduceSummary:
    """Reads every source and publishes its frames until they end or ``should_stop()``, serving the producer's
    metrics meanwhile (on ``options.metrics_port``; 0: none)."""
    readers = planned.readers
    summary = ProduceSummary()
    collector = ProducerCollector(lambda: readers.statuses, summary)
    health = ProducerHealth(lambda: readers.statuses)
    pages = {"/cameras": lambda: cameras_page(readers.statuses)}
    server = HealthServer([health], options.metrics_host, options.metrics_port, pages) if options.metrics_port else None
    REGISTRY.register(collector)
    try:
        if server is not None:
            server.start()
        readers.start()

        def stop() -> bool:
            health.beat()
            return should_stop()

        return produce_frames(
            readers, planned.spaces, kafka, total=planned.total, progress=progress, should_stop=stop, summary=summary
        )
    finally:
        REGISTRY.unregister(collector)
        if server is not None:
            server.stop()
