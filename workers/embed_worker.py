"""The embed worker: frames topic in, faces topic out, one consumer group, any number of processes.

A flat loop: consume a batch (size and time limits), decode and check every message, run the batch through
the analyzer, produce one face record per accepted face and a dead letter per unusable message, flush the
producer (any undelivered record fails the batch), and only then commit the batch's offsets. A crash before
the commit replays the batch; face ids are stable, so the cluster stage absorbs the repeats.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from models.analyzer import FaceAnalyzer
from streaming.decode import ImageDecodeError, decode_image
from streaming.messages import DeadLetter, FaceQuality, FaceRecord, FrameHeaders, MessageError, face_id
from workers.settings import Settings

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """The producer could not deliver every record of a batch; its offsets were not committed."""


@dataclass
class EmbedCounters:
    frames: int = 0
    faces: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    batches: int = 0


def _dead_letter(message: Message, reason: str, error: Exception) -> DeadLetter:
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return DeadLetter(
        stage="embed",
        reason=reason,
        error_class=type(error).__name__,
        error_message=str(error)[:2000],
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=DeadLetter.b64(message.key()),
        value=DeadLetter.b64(message.value()),
        headers=[
            (name, base64.b64encode(value if isinstance(value, bytes) else str(value or "").encode()).decode())
            for name, value in pairs
        ],
    )


class EmbedWorker:
    def __init__(self, settings: Settings, analyzer: FaceAnalyzer, group: str = "facestream-embed") -> None:
        self.settings = settings
        self.analyzer = analyzer
        self.kafka = settings.kafka
        self.counters = EmbedCounters()
        self._failures: list[str] = []
        consumer_config: dict[str, str | int | bool] = {
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
        }
        self.consumer = Consumer(self.kafka.client_config(**consumer_config))
        self.producer = Producer(self.kafka.client_config(**{"enable.idempotence": True, "linger.ms": 5}))

    def run(self, should_stop: Callable[[], bool], batch_size: int = 8, batch_wait_s: float = 0.5) -> None:
        """Processes batches until ``should_stop()``; the batch in hand is finished and committed first."""
        self.consumer.subscribe([self.kafka.frames_topic])
        try:
            while not should_stop():
                messages = self.consumer.consume(num_messages=batch_size, timeout=batch_wait_s)
                if messages:
                    self.process(messages)
        finally:
            self.producer.flush(30)
            self.consumer.close()

    def process(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        frames: list[FrameHeaders] = []
        images = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error on %s: %s", message.topic(), error)
                continue
            try:
                headers = FrameHeaders.from_kafka(message.headers())
                image = decode_image(message.value() or b"", self.settings.run.max_pixels)
            except (MessageError, ImageDecodeError) as exc:
                self._send_dead_letter(message, exc.reason, exc)
                continue
            frames.append(headers)
            images.append(image)
        model = self.analyzer.embedder.path.name
        for headers, faces in zip(frames, self.analyzer.analyze(images), strict=True):
            self.counters.frames += 1
            for face in faces:
                if face.embedding is None:
                    assert face.quality.rejection is not None
                    self.counters.rejected[face.quality.rejection.value] += 1
                    continue
                record = FaceRecord(
                    face_id=face_id(headers.camera, headers.frame, face.index),
                    space=headers.space,
                    camera=headers.camera,
                    frame=headers.frame,
                    timestamp=headers.timestamp,
                    box=(float(face.box[0]), float(face.box[1]), float(face.box[2]), float(face.box[3])),
                    landmarks=[(float(x), float(y)) for x, y in face.landmarks],
                    score=min(max(face.score, 0.0), 1.0),
                    quality=FaceQuality(
                        face_size=face.quality.face_size, sharpness=face.quality.sharpness, yaw=face.quality.yaw
                    ),
                    model=model,
                    embedding=FaceRecord.encode_embedding(face.embedding),
                    dimension=int(face.embedding.shape[0]),
                )
                self._produce(self.kafka.faces_topic, record.face_id.encode(), record.to_json())
                self.counters.faces += 1
        self._commit(messages)
        self.counters.batches += 1
        log.debug("batch of %d messages in %.3f s", len(messages), time.perf_counter() - started)

    def _send_dead_letter(self, message: Message, reason: str, error: Exception) -> None:
        log.warning(
            "dead letter %s[%s]@%s (%s): %s", message.topic(), message.partition(), message.offset(), reason, error
        )
        letter = _dead_letter(message, reason, error)
        self._produce(self.kafka.dead_letter_topic, message.key(), letter.to_json())
        self.counters.dead_letters[reason] += 1

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                self._failures.append(f"{topic}: {error}")

        self.producer.produce(topic, key=key, value=value, on_delivery=delivered)
        self.producer.poll(0)

    def _commit(self, messages: list[Message]) -> None:
        """Flush first: offsets are committed only once every output of the batch is acknowledged."""
        undelivered = self.producer.flush(30)
        if undelivered or self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryError(f"{undelivered} undelivered record(s), {len(failures)} failed: {failures[:3]}")
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.error() is None:
                key = (message.topic() or "", message.partition() or 0)
                offsets[key] = max(offsets.get(key, -1), (message.offset() or 0) + 1)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        except KafkaException as exc:
            # After a rebalance the partitions belong to another member, which replays from the last commit.
            log.warning("commit refused (%s); the new owner of these partitions replays them", exc)
