"""The embed worker: frames topic in, faces topic out, one consumer group, any number of processes.

A flat loop: consume a batch (size and time limits), decode and check every message, run the batch through
the face pipeline (tracks per camera), produce the face records, the appearances of tracks that ended and a
dead letter per unusable message, flush the producer, and only then commit. The commit of a partition stays at
the first frame of the oldest appearance still open on its cameras (workers/embed/commit_points.py), so a crash
replays from there and no appearance is lost; detected faces keep their ids in a replay, so the cluster stage
absorbs the repeats. While Kafka is unreachable the flush waits (the worker reports not-ready); a record that
cannot be delivered at all sends the consumer back to the batch's first offsets, and the batch is done again.
Rebalance callbacks run inside ``consume``, between batches: a revoked partition's open tracks end, their
appearances are reported and the partition is committed to its end before it goes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from models.analyzer import FaceAnalyzer
from models.frames import CameraFrame, FrameResult
from models.pipeline import FacePipeline
from models.track_log import TrackSummary
from streaming.dead_letters import StageFailure, dead_letter, letter_key
from streaming.decode import ImageDecodeError
from streaming.frame_headers import FrameHeaders
from streaming.kafka_io import consume_batch, first_offsets, log_context, next_offsets, where
from streaming.messages import MessageError
from workers.embed.commit_points import CommitPoints
from workers.embed.frame_batches import DecodedFrame, run_isolated, within_budget
from workers.plumbing import metrics
from workers.plumbing.consumer_errors import BrokerWatch, on_consumer_error, stage_consumer
from workers.plumbing.crash_guard import CrashGuard
from workers.plumbing.encoded_picture import EncodedPicture
from workers.plumbing.faces import face_record, track_record
from workers.plumbing.lifecycle import Backoff, pause
from workers.settings import Settings

log = logging.getLogger(__name__)


class EmbedWorker:
    def __init__(self, settings: Settings, analyzer: FaceAnalyzer, group: str = "facestream-embed") -> None:
        self.settings = settings
        self.analyzer = analyzer
        self.kafka = settings.kafka
        self.health = metrics.Health("embed")
        self.pipeline = FacePipeline(analyzer, settings.tracking)
        self.dead_letters: Counter[str] = Counter()
        self._model = analyzer.embedder.path.name
        self.commits = CommitPoints(self.kafka.frames_topic)
        self._failures: list[str] = []
        self._backoff = Backoff(settings.worker.retry_max_s)
        analyzer.timings.observer = lambda stage, seconds: metrics.STAGE_SECONDS.labels(stage).observe(seconds)
        brokers = BrokerWatch(self.health, self.kafka.bootstrap_servers)
        self.consumer = stage_consumer(self.kafka, group, settings.worker.instance_id, brokers)
        self.guard = CrashGuard(self.kafka.frames_topic, self.consumer, self.commits)
        self.producer = Producer(
            self.kafka.client_config(
                **{
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    **brokers.callbacks(),
                }
            )
        )

    def run(
        self, should_stop: Callable[[], bool], batch_size: int | None = None, batch_wait_s: float | None = None
    ) -> None:
        """Processes batches until ``should_stop()``; the batch in hand is finished and committed first."""
        size = batch_size or self.settings.run.batch_size
        wait = self.settings.worker.batch_wait_s if batch_wait_s is None else batch_wait_s
        self.consumer.subscribe([self.kafka.frames_topic], on_assign=self._assigned, on_revoke=self._revoked)
        try:
            while not should_stop():
                messages = consume_batch(self.consumer, size, wait)
                self.health.beat()
                if messages:
                    self.process(messages, should_stop)
                else:
                    self._end_idle_cameras()
        finally:
            # A stopping worker reports the tracks it holds open, then commits past them.
            self._end_cameras(self.commits.cameras())
            self.consumer.close()

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("embed worker assigned %d more partition(s) of %s", len(partitions), self.kafka.frames_topic)
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as exc:
            log.warning("cannot read the commits of the assigned partitions (%s); their cameras replay fully", exc)
            committed = partitions
        for position in committed:
            self.commits.assigned(position.partition, position.metadata, position.offset)
            self.guard.assigned(position.partition, position.metadata)
        self.health.ready()

    def _end_idle_cameras(self) -> None:
        """Cameras that went quiet (a stream stopped, a producer paused) report their open tracks."""
        cameras = self.commits.cameras()
        for summary in self.pipeline.end_idle(self.settings.tracking.max_gap_s):
            self._publish_appearances(cameras.get(summary.camera, "default"), [summary])
        if self._acknowledged(10):
            self._commit()

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions leave between batches: their cameras' tracks end and are reported, then committed."""
        log.info("embed worker gives up %d partition(s) of %s", len(partitions), self.kafka.frames_topic)
        cameras = {c: s for p in partitions for c, s in self.commits.cameras_of(p.partition).items()}
        self._end_cameras(cameras)
        for partition in partitions:
            self.commits.revoked(partition.partition)
            self.guard.revoked(partition.partition)

    def _end_cameras(self, cameras: dict[str, str]) -> None:
        """Ends these cameras' tracks (camera -> space), reports their appearances and commits past them."""
        for camera, space in cameras.items():
            self._publish_appearances(space, self.pipeline.end_cameras([camera]))
        if self._acknowledged(10):
            self._commit()
        else:
            log.warning("appearances of %d camera(s) not acknowledged within 10 s; a replay reports them", len(cameras))

    def _acknowledged(self, timeout_s: float) -> bool:
        """Whether every record produced so far is acknowledged, within ``timeout_s``."""
        if self.producer.flush(timeout_s) or self._failures:
            failures, self._failures = self._failures, []
            log.error("records not delivered (%s); their frames are not committed", "; ".join(failures[:3]))
            return False
        return True

    def process(self, messages: list[Message], should_stop: Callable[[], bool] = lambda: False) -> None:
        started = time.perf_counter()
        usable = [message for message in messages if self._usable(message)]
        if not usable:
            return
        metrics.BATCH_SIZE.labels("embed").observe(len(usable))
        for group in self.guard.groups(usable, self._refuse_crasher):
            decoded = (frame for message in group if (frame := self._decoded(message)) is not None)
            for part in within_budget(decoded, self.settings.worker.batch_max_pixels):
                processed, failed = run_isolated(self.pipeline.process, part)
                for item, result in processed:
                    self._publish(item.headers.space, result)
                for item, error in failed:
                    log.error("frame %s failed in the pipeline", where(item.message), exc_info=error)
                    # A frame whose grey copy decoded but whose whole picture does not: the decoder's reason.
                    reason = error.reason if isinstance(error, ImageDecodeError) else StageFailure.PROCESSING_FAILED
                    self._send_dead_letter(item.message, reason, error)
        publishing = time.perf_counter()
        if self._deliver(usable, should_stop):
            for position in next_offsets(usable):
                self.commits.delivered(position.partition, position.offset)
            self._commit()
        metrics.STAGE_SECONDS.labels("publish").observe(time.perf_counter() - publishing)
        log.debug("batch of %d messages in %.3f s", len(usable), time.perf_counter() - started)

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is not None:
            on_consumer_error(error, self.health)
            return False
        metrics.MESSAGES_CONSUMED.labels(message.topic() or "").inc()
        return True

    def _decoded(self, message: Message) -> DecodedFrame | None:
        """The message's frame, or None: dead-lettered, or reported already by a former owner."""
        partition, offset = message.partition() or 0, message.offset() or 0
        try:
            with self.analyzer.timings.stage("decode"):
                headers = FrameHeaders.from_kafka(message.headers())
                if self.commits.reported_before(partition, headers.camera, offset):
                    metrics.FRAMES_SKIPPED.inc()  # a former owner reported this camera past here
                    return None
                picture = EncodedPicture(message.value() or b"", self.settings.worker.frame_max_pixels)
        except (MessageError, ImageDecodeError) as exc:
            self._send_dead_letter(message, exc.reason, exc)
            return None
        self.commits.seen(partition, headers.camera, headers.space)
        frame = CameraFrame(
            headers.camera, headers.frame, headers.timestamp, picture, position=offset, session=headers.session
        )
        return DecodedFrame(message, headers, frame)

    def _publish(self, space: str, result: FrameResult) -> None:
        """The frame's face records (embedded faces; tracked ones on request), then its appearances."""
        metrics.FRAMES.inc()
        metrics.FRAMES_DETECTED.inc(result.detected)
        metrics.FACES_DETECTED.inc(len(result.faces))
        if result.reset is not None:
            metrics.TRACK_RESETS.labels(result.reset.value).inc()
        # Keyed by identity space: a space's faces stay in order on one partition, the one its writer reads.
        key = space.encode()
        publish_tracked = self.settings.tracking.publish_tracked_faces
        for face in result.faces:
            report = face.quality
            if face.detected and report is not None and report.rejection is not None:
                metrics.FACES_REJECTED.labels(report.rejection.value).inc()
            if face.embedding is None and not (publish_tracked and face.track):
                continue
            metrics.FACES_EMBEDDED.inc(face.embedding is not None)
            record = face_record(
                face,
                space=space,
                model=self._model,
                dimension=self.analyzer.embedder.dimension,
                thumbnail_quality=self.settings.worker.thumbnail_quality,
            )
            self._produce(self.kafka.faces_topic, key, record.to_json())
        self._publish_appearances(space, result.appearances)

    def _publish_appearances(self, space: str, appearances: list[TrackSummary]) -> None:
        for summary in appearances:
            record = track_record(summary, space=space)
            self._produce(self.kafka.faces_topic, space.encode(), record.to_json())

    def _refuse_crasher(self, message: Message, error: Exception) -> None:
        self._send_dead_letter(message, StageFailure.CRASHED_WORKER, error)

    def _send_dead_letter(self, message: Message, reason: str, error: Exception) -> None:
        log.warning("dead letter %s (%s): %s", where(message), reason, error, extra=log_context(message))
        letter = dead_letter(message, "embed", reason, error, self.kafka.max_message_bytes)
        self._produce(self.kafka.dead_letter_topic, letter_key(message), letter.to_json())
        self.dead_letters[reason] += 1
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
        c = self.pipeline.counters
        return (
            f"stopped: {c.frames} frames ({c.detected_frames} detected), {c.faces} faces ({c.embedded} embedded), "
            f"{c.appearances} appearances, dead letters: {dict(self.dead_letters) or 'none'}, "
            f"rejected: {dict(c.rejected) or 'none'}"
        )

    def _commit(self) -> None:
        offsets = self.commits.to_commit(self.pipeline.open_since)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            self.commits.committed(offsets)
        except KafkaException as exc:
            # After a rebalance the partitions belong to another member, which replays from the last commit;
            # otherwise (a coordinator moving, a broker restarting) the next batch or idle turn commits again.
            log.warning("commit refused (%s); it is tried again, or the partitions' new owner replays", exc)
