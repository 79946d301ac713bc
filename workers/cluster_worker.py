"""The cluster worker: faces topic in, identities topic out, one active writer per identity space.

Exactly one assignment per face, through crashes, needs two atomic steps and an outbox between them:
1. Redis: each face is applied by one Lua script together with its input offset and its outgoing events
   (the outbox), so a replayed face changes nothing and no applied face can lose its events.
2. Kafka: the events of a batch and the batch's consumer offsets are committed in one transaction.
Redis is always ahead of Kafka or level with it. On start (and after any failure) the worker takes the writer
lease, rebuilds the engine from Redis, publishes the outbox entries past the committed offsets in one
transaction that also moves the committed offsets up to what Redis applied, and resumes after the last
applied offset. A standby process waits for the lease; the apply script refuses a writer whose lease lapsed,
and the transactional id fences its producer.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from redis.exceptions import RedisError

from clustering.compaction import Compactor, SnapshotJob
from clustering.engine import OnlineRankOrder
from clustering.lease import LeaseKeeper, WriterLease
from clustering.redis_client import RedisClient
from clustering.redis_store import OutboxEntry, RedisStore
from clustering.store import StoreError
from streaming.kafka_io import consume_batch, dead_letter, log_context, next_offsets, where
from streaming.messages import Assignment, FaceRecord, MergeEvent, MessageError, TrackRecord, parse_faces_topic
from workers import metrics
from workers.consumer_errors import BrokerWatch, on_consumer_error
from workers.faces import appearance_event, apply_face
from workers.lifecycle import Backoff, pause
from workers.settings import Settings

log = logging.getLogger(__name__)

_KAFKA_TIMEOUT_S = 30.0


class LeaseLostError(RuntimeError):
    """Another process holds the writer lease of this identity space now."""


class KafkaCallTimeoutError(RuntimeError):
    """A librdkafka call did not return within its deadline; its producer is abandoned."""


#: Failures the worker recovers from by stepping down and rebuilding its position from Redis.
RECOVERABLE = (RedisError, StoreError, KafkaException, LeaseLostError, KafkaCallTimeoutError)


def _bounded(call: Callable[[], None], seconds: float, what: str) -> None:
    """Runs ``call`` in a helper thread and waits at most ``seconds`` for it.

    librdkafka's send_offsets_to_transaction can block past its own timeout when the group coordinator went
    away and came back (librdkafka issues 5456 and 5511, open in 2.16; reproduced here by restarting the
    broker). The stuck call cannot be cancelled: the worker abandons that producer, and the next one, with
    the same transactional id, fences it.
    """
    failure: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name=what, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise KafkaCallTimeoutError(f"{what} did not return within {seconds:.0f} s; abandoning this producer")
    if failure:
        raise failure[0]


@dataclass
class ClusterCounters:
    faces: int = 0
    duplicates: int = 0
    other_space: int = 0
    merges: int = 0
    appearances: int = 0
    recoveries: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)


class ClusterWorker:
    def __init__(self, settings: Settings, client: RedisClient) -> None:
        self.settings = settings
        self.kafka = settings.kafka
        self.config = settings.worker
        self.space = self.config.space
        self.group = f"facestream-cluster-{self.space}"
        self.health = metrics.Health("cluster")
        self.lease = WriterLease(client, self.space, self.config.lease_ttl_s)
        self.store = RedisStore(client, self.space, self.lease.token, observe=self._observe_redis)
        self.counters = ClusterCounters()
        self.engine: OnlineRankOrder | None = None
        self.consumer = Consumer(
            self.kafka.client_config(
                **{
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "auto.offset.reset": "earliest",
                    **BrokerWatch(self.health, self.kafka.bootstrap_servers).callbacks(),
                }
            )
        )
        self._producer: Producer | None = None
        self._in_transaction = False
        #: Records produced in the open transaction, per topic: counted as produced once it commits.
        self._produced: Counter[str] = Counter()
        self._published_below: dict[int, int] = {}
        self.keeper = LeaseKeeper(self.lease, self.config.writer_stall_s)
        self.compactor: Compactor | None = None
        #: A failure made this worker step down, and it has not been the writer since.
        self._recovering = False
        #: Event-only outbox entries (appearances, tracked faces) recorded in the open batch.
        self._events = 0
        self._backoff = Backoff(self.config.retry_max_s)

    @staticmethod
    def _observe_redis(operation: str, seconds: float) -> None:
        metrics.REDIS_SECONDS.labels(operation).observe(seconds)

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Clusters faces until ``should_stop()``; the batch in hand is committed first."""
        try:
            while not should_stop():
                try:
                    if self.engine is None and not self._become_writer():
                        pause(should_stop, self.lease.ttl_ms / 3000)
                        continue
                    self._keep_lease()
                    messages = consume_batch(self.consumer, self.config.cluster_batch_size, self.config.batch_wait_s)
                    self.health.beat()
                    if messages:
                        self.process(messages)
                    self._snapshot_if_due()
                except RECOVERABLE as exc:
                    self._step_down(exc)
                    pause(should_stop, self._backoff.next())
        finally:
            self._close()

    # -- taking over -------------------------------------------------------------------------------------------

    def _become_writer(self) -> bool:
        """Takes over, counting a try after a failure as an attempt and the first success as a recovery."""
        if self._recovering:
            metrics.RECOVERY_ATTEMPTS.labels("cluster").inc()
        if not self._take_over():
            return False
        if self._recovering:
            metrics.RECOVERIES.labels("cluster").inc()
            self._recovering = False
        return True

    def _take_over(self) -> bool:
        """Becomes the writer if the lease is free: rebuilds the engine and the consumer position from Redis."""
        if not self.lease.acquire():
            metrics.WRITER.set(0)
            self.health.standby(f"standby: another worker holds the writer lease of space {self.space}")
            return False
        started = time.perf_counter()
        self.keeper.start()  # a long restore keeps the lease too
        engine = self._restore()
        if self.keeper.lost:
            self.health.standby(f"standby: the writer lease of space {self.space} passed to another worker")
            return False
        producer = self._transactional_producer()
        topic = self.kafka.faces_topic
        partitions = self._partitions(topic)
        found = self.consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=_KAFKA_TIMEOUT_S)
        committed = {tp.partition: tp.offset for tp in found if tp.offset >= 0}
        applied = self.store.offsets()
        outbox = self.store.outbox()
        pending = [e for e in outbox if e.offset >= committed.get(e.partition, 0)]
        caught_up = {p: o + 1 for p, o in applied.items() if o + 1 > committed.get(p, 0)}
        if pending or caught_up:
            self._begin_transaction(producer)
            for entry in pending:
                self._produce_events(producer, entry)
            self._commit_transaction(producer, [TopicPartition(topic, p, o) for p, o in caught_up.items()])
            committed.update(caught_up)
        self.store.mark_published(len(outbox))
        # Faces below the committed offsets had their events published before. Consumption resumes after what
        # Redis applied (from the start of a partition Redis knows nothing of), so faces whose state Redis lost
        # are applied again, from the faces topic, without publishing their events again.
        self._published_below = dict(committed)
        resume = {p: applied[p] + 1 if p in applied else OFFSET_BEGINNING for p in partitions}
        self.consumer.assign([TopicPartition(topic, p, o) for p, o in resume.items()])
        self.engine = engine
        self.counters.recoveries += 1
        metrics.WRITER.set(1)
        metrics.CLUSTERS.set(engine.cluster_count)
        self._backoff.reset()
        self.health.ready()
        log.info(
            "writer of identity space %s: %d faces in %d clusters restored, %d event record(s) republished, "
            "resuming %s at %s (%.1f s)",
            self.space,
            len(engine),
            engine.cluster_count,
            len(pending),
            topic,
            {p: resume[p] for p in sorted(resume)},
            time.perf_counter() - started,
        )
        return True

    def _transactional_producer(self) -> Producer:
        """A fresh transactional producer; initialising it fences any earlier producer of this space."""
        producer = Producer(
            self.kafka.client_config(
                **{
                    "transactional.id": f"facestream-cluster-{self.space}",
                    "enable.idempotence": True,
                    "linger.ms": 5,
                }
            )
        )
        producer.init_transactions(_KAFKA_TIMEOUT_S)
        self._producer = producer
        return producer

    def _partitions(self, topic: str) -> list[int]:
        described = self.consumer.list_topics(topic, timeout=_KAFKA_TIMEOUT_S).topics.get(topic)
        if described is None or described.error is not None:
            raise KafkaException(described.error if described is not None else KafkaError(KafkaError._UNKNOWN_TOPIC))
        return sorted(described.partitions)

    def _restore(self) -> OnlineRankOrder:
        """The engine rebuilt from Redis, read by pages, with progress in the log."""
        started, logged = time.monotonic(), time.monotonic()

        def progress(loaded: int, total: int) -> None:
            nonlocal logged
            self.keeper.progressed()
            if time.monotonic() - logged >= 10:
                logged = time.monotonic()
                log.info("restoring identity space %s: %d of %d faces read from Redis", self.space, loaded, total)

        state = self.store.load(progress)
        engine = OnlineRankOrder.restore(self.store, self.config.dimension, self.settings.clustering, state)
        covered = state.snapshot_count
        del state  # the engine holds what it needs; the rest is freed before the freeze
        gc.freeze()  # see process(): the restored engine is long-lived
        metrics.RESTORE_SECONDS.observe(time.monotonic() - started)
        clustering = self.settings.clustering
        config = self.config
        job = SnapshotJob(
            config.redis_url,
            self.space,
            self.lease.token,
            config.dimension,
            clustering.index,
            config.redis_password(),
            config.redis_cluster,
        )
        self.compactor = Compactor(job, clustering.rank_order.snapshot_every, covered=covered)
        return engine

    def _keep_lease(self) -> None:
        """The keeper thread renews the lease; the loop reports it is alive and learns when it was lost."""
        self.keeper.progressed()
        if self.keeper.lost:
            raise LeaseLostError(f"identity space {self.space}: {self.keeper.lost}")

    def _snapshot_if_due(self) -> None:
        if self.engine is None or self.compactor is None:
            return
        self.compactor.after(len(self.engine))
        for faces, seconds in self.compactor.finished:
            metrics.SNAPSHOT_SECONDS.observe(seconds)
            metrics.SNAPSHOT_FACES.set(faces)
            log.info("index snapshot of %d faces of space %s stored in %.1f s", faces, self.space, seconds)
        self.compactor.finished.clear()

    # -- the batch ---------------------------------------------------------------------------------------------

    def process(self, messages: list[Message]) -> None:
        """Applies a batch to the state and publishes its events and offsets in one Kafka transaction."""
        engine, producer = self.engine, self._producer
        if engine is None or producer is None:
            raise RuntimeError("process() runs only while this worker holds the writer lease")
        metrics.BATCH_SIZE.labels("cluster").observe(len(messages))
        started = time.perf_counter()
        self._begin_transaction(producer)
        applied = 0
        # The batch's faces and events reach Redis in one round trip at the end of the block, before the
        # transaction that publishes them commits (a failure in between leaves them in the outbox).
        with self.store.batch():
            for message in messages:
                error = message.error()
                if error is not None:
                    on_consumer_error(error, self.health)
                    continue
                metrics.MESSAGES_CONSUMED.labels(message.topic() or "").inc()
                partition, offset = message.partition() or 0, message.offset() or 0
                publish = offset >= self._published_below.get(partition, 0)
                try:
                    record = parse_faces_topic(message.value())
                    vector = (
                        record.vector(self.config.dimension)
                        if isinstance(record, FaceRecord) and record.embedding
                        else None
                    )
                except MessageError as exc:
                    if publish:
                        self._dead_letter(producer, message, exc.reason, exc)
                    continue
                if record.space != self.space:
                    self.counters.other_space += 1
                    metrics.OTHER_SPACE_FACES.inc()
                    continue
                if isinstance(record, TrackRecord):
                    self._appearance(producer, engine, record, (partition, offset), publish)
                    continue
                if vector is None:
                    self._tracked_face(producer, engine, record, (partition, offset), publish)
                    continue
                count = len(engine)
                assignment = apply_face(engine, record, vector, (partition, offset))
                if len(engine) == count:
                    self.counters.duplicates += 1
                    metrics.DUPLICATE_FACES.inc()
                    continue
                applied += 1
                merged = sum(len(m.absorbed) for m in assignment.merges)
                self.counters.faces += 1
                self.counters.merges += merged
                metrics.FACES_CLUSTERED.inc()
                metrics.MERGES.inc(merged)
                if publish:
                    entry = OutboxEntry(
                        partition,
                        offset,
                        record.face_id,
                        assignment.cluster_id,
                        assignment.merges,
                        record.camera,
                        record.timestamp,
                    )
                    self._produce_events(producer, entry)
        metrics.STAGE_SECONDS.labels("cluster").observe(time.perf_counter() - started)
        committing = time.perf_counter()
        self._commit_transaction(producer, next_offsets(messages))
        metrics.STAGE_SECONDS.labels("publish").observe(time.perf_counter() - committing)
        self.store.mark_published(applied + self._events)
        self._events = 0
        metrics.CLUSTERS.set(engine.cluster_count)
        # The engine holds millions of long-lived objects: without this, each full collection of Python's
        # garbage collector walks them all (200 ms at 60,000 faces, growing with the space) inside a batch.
        gc.freeze()

    def _tracked_face(
        self, producer: Producer, engine: OnlineRankOrder, record: FaceRecord, at: tuple[int, int], publish: bool
    ) -> None:
        """A tracked face that was not embedded takes its track's cluster (published on request only)."""
        cluster = engine.track_cluster(record.track) if record.track else None
        if cluster is None:
            return
        entry = OutboxEntry(at[0], at[1], record.face_id, cluster, (), record.camera, record.timestamp)
        self._event(producer, record.face_id, entry, publish)

    def _appearance(
        self, producer: Producer, engine: OnlineRankOrder, record: TrackRecord, at: tuple[int, int], publish: bool
    ) -> None:
        event = appearance_event(engine, record)
        if event is None:
            return
        entry = OutboxEntry(
            at[0],
            at[1],
            record.best_face or "",
            event.cluster,
            (),
            record.camera,
            record.last_timestamp,
            appearance=event.to_json().decode(),
        )
        if self._event(producer, f"{record.track}#{record.sequence}", entry, publish):
            self.counters.appearances += 1
            metrics.APPEARANCES.inc()

    def _event(self, producer: Producer, event_id: str, entry: OutboxEntry, publish: bool) -> bool:
        """Records an event with its offset in Redis, then publishes it in the open transaction."""
        if not self.store.apply_event(event_id, entry):
            self.counters.duplicates += 1
            metrics.DUPLICATE_FACES.inc()
            return False
        self._events += 1
        if publish:
            self._produce_events(producer, entry)
        return True

    def _begin_transaction(self, producer: Producer) -> None:
        producer.begin_transaction()
        self._in_transaction = True
        self._produced.clear()
        self._events = 0

    def _commit_transaction(self, producer: Producer, offsets: list[TopicPartition]) -> None:
        """Adds the consumer offsets to the open transaction and commits it."""
        if offsets:
            metadata = self.consumer.consumer_group_metadata()
            _bounded(
                lambda: producer.send_offsets_to_transaction(offsets, metadata, _KAFKA_TIMEOUT_S),
                _KAFKA_TIMEOUT_S + 5,
                "send_offsets_to_transaction",
            )
        producer.commit_transaction(_KAFKA_TIMEOUT_S)
        self._in_transaction = False
        for topic, produced in self._produced.items():
            metrics.MESSAGES_PRODUCED.labels(topic).inc(produced)

    def _produce_events(self, producer: Producer, entry: OutboxEntry) -> None:
        # Keyed by identity space: one partition holds a space's events in the order they happened, so a
        # consumer never sees a merge before the assignments it re-labels.
        key = self.space.encode()
        topic = self.kafka.identities_topic
        if entry.appearance is not None:
            producer.produce(topic, key=key, value=entry.appearance.encode())
            self._produced[topic] += 1
            return
        assignment = Assignment(
            space=self.space,
            face_id=entry.face_id,
            cluster=entry.cluster,
            camera=entry.camera,
            timestamp=entry.timestamp,
        )
        producer.produce(topic, key=key, value=assignment.to_json())
        for merge in entry.merges:
            event = MergeEvent(
                space=self.space, survivor=merge.survivor, absorbed=list(merge.absorbed), face_id=entry.face_id
            )
            producer.produce(topic, key=key, value=event.to_json())
        self._produced[topic] += 1 + len(entry.merges)

    def _dead_letter(self, producer: Producer, message: Message, reason: str, error: Exception) -> None:
        log.warning("dead letter %s (%s): %s", where(message), reason, error, extra=log_context(message))
        letter = dead_letter(message, "cluster", reason, error)
        producer.produce(self.kafka.dead_letter_topic, key=message.key(), value=letter.to_json())
        self.counters.dead_letters[reason] += 1
        metrics.DEAD_LETTERS.labels("cluster", reason).inc()
        self._produced[self.kafka.dead_letter_topic] += 1

    # -- failure and stop --------------------------------------------------------------------------------------

    def _step_down(self, exc: Exception) -> None:
        """Drops everything held in memory; the next turn of the loop rebuilds it from Redis and Kafka."""
        log.error(
            "cluster worker of space %s recovering from %s: %s; nothing is committed past the state in Redis",
            self.space,
            type(exc).__name__,
            exc,
        )
        self.health.not_ready(f"{type(exc).__name__}: {exc}"[:300])
        if isinstance(exc, RedisError | StoreError):
            metrics.REDIS_ERRORS.inc()
        self._recovering = True
        metrics.WRITER.set(0)
        self.engine = None
        self._stop_writing()
        if self._producer is not None and self._in_transaction and not isinstance(exc, KafkaCallTimeoutError):
            try:
                self._producer.abort_transaction(5)
            except KafkaException as abort_error:
                # A fresh producer with the same transactional id aborts the open transaction anyway.
                log.warning("could not abort the open transaction (%s); the next producer will", abort_error)
        self._producer = None
        self._in_transaction = False

    def summary(self) -> str:
        c = self.counters
        return (
            f"stopped: {c.faces} faces clustered, {c.appearances} appearances, {c.duplicates} repeats ignored, "
            f"{c.merges} merges, "
            f"dead letters: {dict(c.dead_letters) or 'none'}, writer takeovers: {c.recoveries}"
        )

    def _stop_writing(self) -> None:
        self.keeper.stop()
        if self.compactor is not None:
            self.compactor.stop()
            self.compactor = None

    def _close(self) -> None:
        self.engine = None
        self._stop_writing()
        self._producer = None
        try:
            self.lease.release()
        except RedisError as exc:
            log.warning("could not release the writer lease (it lapses in %.0f s): %s", self.lease.ttl_ms / 1000, exc)
        metrics.WRITER.set(0)
        self.consumer.close()
