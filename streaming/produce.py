"""`facestream produce`: camera frames to the frames topic as JPEG, with their headers."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
from confluent_kafka import KafkaError, Message, Producer
from tqdm import tqdm

from streaming.messages import FrameHeaders
from streaming.settings import KafkaSettings
from streaming.sources import BadInput, FrameSource

log = logging.getLogger(__name__)

#: Kafka's default message.max.bytes is about 1 MB; larger frames are re-encoded at lower quality.
MAX_FRAME_BYTES = 1_000_000


@dataclass
class ProduceSummary:
    frames: int = 0
    skipped_bad: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    bytes: int = 0

    def line(self, topic: str) -> str:
        bad = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped_bad.items())) or "none"
        return (
            f"produced {self.frames} frames ({self.bytes / 1e6:.1f} MB) to {topic}; "
            f"bad inputs: {bad}; undelivered: {self.failed}"
        )


class FrameTooLargeError(ValueError):
    pass


def encode_jpeg(image: cv2.typing.MatLike, quality: int = 90) -> bytes:
    """JPEG bytes under MAX_FRAME_BYTES, lowering the quality as needed."""
    for attempt in (quality, 75, 60, 40):
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, attempt])
        if ok and len(data) <= MAX_FRAME_BYTES:
            return bytes(data)
    raise FrameTooLargeError(f"frame of {image.shape[1]}x{image.shape[0]} stays over {MAX_FRAME_BYTES} bytes as JPEG")


def produce_frames(
    sources: Sequence[FrameSource],
    kafka: KafkaSettings,
    *,
    space: str = "default",
    fps: float | None = None,
    every: int = 1,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> ProduceSummary:
    """Publishes every ``every``-th frame, paced at ``fps`` (None: the source's own rate; 0: no pacing)."""
    summary = ProduceSummary()
    producer = Producer(kafka.client_config(**{"enable.idempotence": True, "linger.ms": 20}))

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            summary.failed += 1
            log.error("frame %s was not delivered: %s", message.key(), error)

    total = sum(s.total or 0 for s in sources) // every or None
    with tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        for source in sources:
            rate = fps if fps is not None else (source.fps or 0.0)
            start = time.monotonic()
            for item in source:
                if should_stop is not None and should_stop():
                    break
                if isinstance(item, BadInput):
                    summary.skipped_bad[item.reason.value] += 1
                    log.warning("skipped %s frame %d (%s): %s", item.source, item.number, item.name or "-", item.detail)
                    continue
                if item.number % every:
                    continue
                if rate > 0:
                    due = start + item.number / rate
                    time.sleep(max(0.0, due - time.monotonic()))
                try:
                    value = encode_jpeg(item.image)
                except FrameTooLargeError as exc:
                    summary.skipped_bad["too_large"] += 1
                    log.warning("skipped %s frame %d: %s", item.source, item.number, exc)
                    continue
                headers = FrameHeaders(camera=item.source, frame=item.number, timestamp=item.timestamp, space=space)
                producer.produce(
                    kafka.frames_topic,
                    key=item.source.encode(),
                    value=value,
                    headers=headers.to_kafka(),
                    on_delivery=delivered,
                )
                producer.poll(0)
                summary.frames += 1
                summary.bytes += len(value)
                bar.update(1)
            if should_stop is not None and should_stop():
                break
    undelivered = producer.flush(30)
    summary.failed += undelivered
    return summary
