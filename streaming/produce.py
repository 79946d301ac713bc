"""`facestream produce`: the frames of every source, read at once, to the frames topic as JPEG with their headers."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer
from tqdm import tqdm

from streaming.frame_headers import FrameHeaders
from streaming.jpeg import FrameTooLargeError, encode_jpeg
from streaming.read_policy import ReadPolicy
from streaming.readers import Readers
from streaming.settings import KafkaSettings
from streaming.sources import BadInput, Frame, FrameSource

log = logging.getLogger(__name__)


@dataclass
class ProduceSummary:
    frames: int = 0
    skipped_bad: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    bytes: int = 0
    dropped_stale: int = 0
    #: Frames dropped because librdkafka's send queue was full (the broker unreachable for minutes).
    dropped_backlog: int = 0
    #: Sources given up (camera: why): unreadable files, live sources past their retries.
    sources_failed: dict[str, str] = field(default_factory=dict)

    def line(self, topic: str) -> str:
        bad = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped_bad.items())) or "none"
        failed = "; ".join(f"{camera}: {why}" for camera, why in sorted(self.sources_failed.items()))
        return (
            f"produced {self.frames} frames ({self.bytes / 1e6:.1f} MB) to {topic}; "
            f"bad inputs: {bad}; stale frames dropped: {self.dropped_stale + self.dropped_backlog}; "
            f"undelivered: {self.failed}" + (f"; sources given up: {failed}" if failed else "")
        )


def _worth_a_line(count: int) -> bool:
    """The 1st, 10th, 100th, ... of many alike events: each gets a log line, the others a count."""
    return count == int(10 ** round(math.log10(count)))


class FrameProducer:
    """The Kafka side of `facestream produce`: one idempotent producer, frames as JPEG with their headers."""

    def __init__(self, kafka: KafkaSettings, summary: ProduceSummary) -> None:
        self.topic = kafka.frames_topic
        self.summary = summary
        self._producer = Producer(kafka.client_config(**{"enable.idempotence": True, "linger.ms": 20}))

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.summary.failed += 1
            if _worth_a_line(self.summary.failed):  # a broker outage fails every frame: a line, not a flood
                camera = (message.key() or b"").decode()
                log.error("%d frame(s) not delivered, the latest of camera %s: %s", self.summary.failed, camera, error)

    def send(self, frame: Frame, space: str) -> None:
        try:
            value = frame.jpeg or encode_jpeg(frame.image)
        except FrameTooLargeError as exc:
            self.summary.skipped_bad["too_large"] += 1
            log.warning("skipped %s frame %d: %s", frame.source, frame.number, exc)
            return
        headers = FrameHeaders(
            camera=frame.source,
            session=frame.session,
            frame=frame.number,
            timestamp=frame.timestamp,
            space=space,
        )
        try:
            self._producer.produce(
                self.topic,
                key=frame.source.encode(),
                value=value,
                headers=headers.to_kafka(),
                on_delivery=self._delivered,
            )
        except BufferError:
            # librdkafka's queue is full (Kafka unreachable for a while): a live frame that cannot wait is dropped.
            self.summary.dropped_backlog += 1
            if _worth_a_line(self.summary.dropped_backlog):
                log.warning("%d frame(s) dropped: Kafka's send queue is full", self.summary.dropped_backlog)
            self._producer.poll(0.1)
            return
        self._producer.poll(0)
        self.summary.frames += 1
        self.summary.bytes += len(value)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout_s: float) -> None:
        self.summary.failed += self._producer.flush(timeout_s)


def produce_frames(
    readers: Readers,
    spaces: Mapping[str, str],
    kafka: KafkaSettings,
    *,
    total: int | None = None,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
    summary: ProduceSummary | None = None,
) -> ProduceSummary:
    """Publishes the frames of every source as they come, each to its camera's space, until every source has
    ended or ``should_stop()``; readers are closed on the way out."""
    summary = summary or ProduceSummary()
    producer = FrameProducer(kafka, summary)
    stop = should_stop or (lambda: False)
    try:
        with tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True) as bar:
            for item in readers.items():
                if stop():
                    break
                if item is None:
                    producer.poll()
                    continue
                if isinstance(item, BadInput):
                    summary.skipped_bad[item.reason.value] += 1
                    log.warning("skipped %s frame %d (%s): %s", item.source, item.number, item.name or "-", item.detail)
                    continue
                producer.send(item, spaces[item.source])
                bar.update(1)
    finally:
        readers.close()
        producer.flush(30)
        summary.dropped_stale = sum(status.dropped_stale for status in readers.statuses)
        summary.sources_failed = {s.camera: s.error or "failed" for s in readers.failed()}
    return summary


def produce_sources(
    sources: Sequence[FrameSource],
    kafka: KafkaSettings,
    *,
    space: str = "default",
    policy: ReadPolicy | None = None,
    progress: bool = False,
) -> ProduceSummary:
    """Every frame of these sources, read at once (unpaced, full size unless ``policy`` says otherwise), to
    the frames topic under one identity space: for scripts and tests; the command plans its own readers."""
    readers = Readers([(source, policy or ReadPolicy(jpeg=True)) for source in sources]).start()
    return produce_frames(readers, {source.camera: space for source in sources}, kafka, progress=progress)
