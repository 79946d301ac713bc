"""The embed worker: frames topic in, faces topic out, one consumer group, any number of processes.

A flat loop: consume a batch (size and time limits), decode and check every message, run the batch through
the analyzer, produce one face record per accepted face and a dead letter per unusable message, flush the
producer, and only then commit the batch's offsets. While Kafka is unreachable the flush waits (the worker
reports not-ready); a record that cannot be delivered at all sends the consumer back to the batch's first
offsets, and the batch is done again. A crash before the commit replays the batch; face ids are stable, so
the cluster stage absorbs the repeats. Rebalance callbacks run inside ``consume``, between batches, when
every batch in hand is already committed: a revoked partition has nothing pending.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from models.analyzer import FaceAnalyzer
from streaming.decode import ImageDecodeError, decode_image
from streaming.kafka_io import (
    TRANSIENT_ERRORS,
    consume_batch,
    dead_letter,
    first_offsets,
    log_context,
    next_offsets,
    where,
)
from streaming.messages import FaceQuality, FaceRecord, FrameHeaders, MessageError, face_id
from workers import metrics
from workers.lifecycle import Backoff, pause
from workers.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class EmbedCounters:
    frames: int = 0
    faces: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)


class EmbedWorker:
    def __init__(self, settings: Settings, analyzer: FaceAnalyzer, group: str = "facestream-embed") -> None:
        self.settings = settings
        self.analyzer = analyzer
        self.kafka = settings.kafka
        self.health = metrics.Health("embed")
        self.counters = EmbedCounters()
        self._failures: list[str] = []
        self._backoff = Backoff(settings.worker.retry_max_s)
        analyzer.timings.observer = lambda stage, seconds: metrics.STAGE_SECONDS.labels(stage).observe(seconds)
        self.consumer = Consumer(
            self.kafka.client_config(
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "cooperative-sticky",
                    "session.timeout.ms": self.kafka.session_timeout_ms,
                    "statistics.interval.ms": 5000,
                    "stats_cb": metrics.record_lag,
                }
            )
        )
        self.producer = Producer(self.kafka.client_config(**{"enable.idempotence": True, "linger.ms": 5}))

    def run(
        self, should_stop: Callable[[], bool], batch_size: int | None = None, batch_wait_s: float | None = None
    ) -> None:
        """Processes batches until ``should_stop()``; the batch in hand is finished and committed first."""
        size = batch_size or self.settings.run.batch_size
        wait = self.settings.worker.batch_wait_s if batch_wait_s is None else batch_wait_s
        self.consumer.subscribe([self.kafka.frames_topic], on_assign=self._assigned)
        try:
            while not should_stop():
                messages = consume_batch(self.consumer, size, wait)
                self.health.beat()
                if messages:
                    self.process(messages, should_stop)
        finally:
            self.producer.flush(30)
            self.consumer.close()

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("embed worker assigned %d more partition(s) of %s", len(partitions), self.kafka.frames_topic)
        self.health.ready()

    def process(self, messages: list[Message], should_stop: Callable[[], bool] = lambda: False) -> None:
        started = time.perf_counter()
        frames: list[FrameHeaders] = []
        images = []
        usable: list[Message] = []
        for message in messages:
            error = message.error()
            if error is not None:
                self._consumer_error(error)
                continue
            usable.append(message)
            metrics.MESSAGES_CONSUMED.labels(message.topic() or "").inc()
            try:
                with self.analyzer.timings.stage("decode"):
                    headers = FrameHeaders.from_kafka(message.headers())
                    image = decode_image(message.value() or b"", self.settings.run.max_pixels)
            except (MessageError, ImageDecodeError) as exc:
                self._send_dead_letter(message, exc.reason, exc)
                continue
            frames.append(headers)
            images.append(image)
        if not usable:
            return
        metrics.BATCH_SIZE.labels("embed").observe(len(usable))
        model = self.analyzer.embedder.path.name
        for headers, faces in zip(frames, self.analyzer.analyze(images), strict=True):
            self.counters.frames += 1
            metrics.FRAMES.inc()
            metrics.FACES_DETECTED.inc(len(faces))
            for face in faces:
                if face.embedding is None:
                    assert face.quality.rejection is not None
                    self.counters.rejected[face.quality.rejection.value] += 1
                    metrics.FACES_REJECTED.labels(face.quality.rejection.value).inc()
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
        publishing = time.perf_counter()
        if self._deliver(usable, should_stop):
            self._commit(usable)
        metrics.STAGE_SECONDS.labels("publish").observe(time.perf_counter() - publishing)
        log.debug("batch of %d messages in %.3f s", len(usable), time.perf_counter() - started)

    def _consumer_error(self, error: KafkaError) -> None:
        metrics.KAFKA_ERRORS.labels("embed").inc()
        if error.fatal():
            raise KafkaException(error)
        if error.code() in TRANSIENT_ERRORS:
            self.health.not_ready(f"Kafka: {error.str()}")
        log.warning("Kafka consumer: %s (librdkafka retries on its own)", error)

    def _send_dead_letter(self, message: Message, reason: str, error: Exception) -> None:
        log.warning("dead letter %s (%s): %s", where(message), reason, error, extra=log_context(message))
        letter = dead_letter(message, "embed", reason, error)
        self._produce(self.kafka.dead_letter_topic, message.key(), letter.to_json())
        self.counters.dead_letters[reason] += 1
        metrics.DEAD_LETTERS.labels("embed", reason).inc()

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                self._failures.append(f"{topic}: {error}")
            else:
                metrics.MESSAGES_PRODUCED.labels(topic).inc()

        while True:
            try:
                self.producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                # The local queue is full while the broker is slow or away: wait for room, never drop.
                self.producer.poll(0.5)
        self.producer.poll(0)

    def _deliver(self, batch: list[Message], should_stop: Callable[[], bool]) -> bool:
        """Waits until every record of the batch is acknowledged; False when the batch must be done again.

        While the brokers are away the records stay queued in librdkafka (idempotent, in order) and the worker
        reports not-ready. A record that failed for good sends the consumer back to the batch's first offsets.
        """
        while (undelivered := self.producer.flush(5)) and not should_stop():
            self.health.not_ready(f"waiting for Kafka to acknowledge {undelivered} record(s)")
        if self._failures or undelivered:
            failures, self._failures = self._failures, []
            log.error(
                "%d record(s) of a batch of %d messages not delivered (%s); the batch will be done again",
                len(failures) + undelivered,
                len(batch),
                "; ".join(failures[:3]) or "stopping",
            )
            if undelivered:
                return False
            for position in first_offsets(batch):
                self.consumer.seek(position)
            pause(should_stop, self._backoff.next())
            return False
        self._backoff.reset()
        self.health.ready()
        return True

    def summary(self) -> str:
        c = self.counters
        return (
            f"stopped: {c.frames} frames, {c.faces} faces, dead letters: {dict(c.dead_letters) or 'none'}, "
            f"rejected: {dict(c.rejected) or 'none'}"
        )

    def _commit(self, batch: list[Message]) -> None:
        offsets = next_offsets(batch)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # After a rebalance the partitions belong to another member, which replays from the last commit.
            log.warning("commit refused (%s); the new owner of these partitions replays them", exc)
