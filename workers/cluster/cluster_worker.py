"""The cluster worker: faces topic in, identities topic out, any number of processes in one consumer group.

The faces topic is keyed by identity space, so each space lives on one partition. The group spreads the
partitions over the workers, and a worker writes the spaces of the partitions it holds (workers/cluster/space_writer.py:
one writer lease per space still fences a worker that lost its partitions but not yet its spaces).

Exactly one assignment per face, through crashes, needs two atomic steps and an outbox between them:
1. Redis: a batch's faces of one space are applied by one Lua script together with their input offsets and
   their outgoing events (the outbox), so a replayed face changes nothing and no applied face can lose its
   events.
2. Kafka: the events of a batch and the batch's consumer offsets are committed in one transaction
   (workers/cluster/transactions.py).
Redis is always ahead of Kafka or level with it. A partition is read again from the oldest position one of its
spaces needs (workers/cluster/positions.py); faces already applied are not applied again, and their events are
published in the transaction that commits past them if they never were.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from redis.exceptions import RedisError

from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import RedisClient
from clustering.store import StoreError
from streaming.commands import Command, command_or_error, parse_cluster_input
from streaming.dead_letters import StageFailure
from streaming.kafka_io import consume_batch, next_offsets
from streaming.messages import MessageError
from workers.cluster.cluster_counters import ClusterCounters, ClusterInput
from workers.cluster.cluster_crash_guard import ClusterCrashGuard
from workers.cluster.positions import Positions
from workers.cluster.retention import Retention
from workers.cluster.space_writer import LeaseLostError, SpaceWriter
from workers.cluster.space_writers import SpaceRefusedError, SpaceWriters
from workers.cluster.transactions import KafkaCallTimeoutError, TransactionalPublisher, transactional_id
from workers.plumbing import metrics
from workers.plumbing.consumer_errors import BrokerWatch, on_consumer_error, stage_consumer
from workers.plumbing.lifecycle import Backoff, pause
from workers.plumbing.poisoned_records import PoisonedRecords, PoisonRecordError
from workers.settings import Settings

log = logging.getLogger(__name__)


#: Failures the worker recovers from by stepping down and rebuilding its position from Redis.
RECOVERABLE = (RedisError, StoreError, KafkaException, LeaseLostError, KafkaCallTimeoutError, PoisonRecordError)


class ClusterWorker:
    def __init__(self, settings: Settings, client: RedisClient) -> None:
        self.settings = settings
        self.kafka = settings.kafka
        self.config = settings.worker
        self.client = client
        self.group = self.config.cluster_group
        self.health = metrics.Health("cluster")
        self.counters = ClusterCounters()
        brokers = BrokerWatch(self.health, self.kafka.bootstrap_servers)
        self.consumer = stage_consumer(
            self.kafka, self.group, self.config.instance_id, brokers, **{"isolation.level": "read_committed"}
        )
        self.publisher = TransactionalPublisher(
            self.kafka, self.consumer, transactional_id(self.group, self.config.instance_id)
        )
        self.positions = Positions(self.consumer, client, self.kafka.faces_topic)
        #: The spaces this worker writes now.
        self.writers = SpaceWriters(settings, client, self.positions, self.counters)
        self.retention = Retention(settings.clustering.retention_days)
        #: Held while a batch changes the engines, so that the identity API reads none half-changed.
        self.state_lock = threading.Lock()
        #: A failure made this worker step down, and it has not been working since.
        self._recovering = False
        self._backoff = Backoff(self.config.retry_max_s)
        #: Faces-topic records that failed to apply: dead letters when read again.
        self._poisoned = PoisonedRecords()
        #: Faces-topic records that killed workers before (workers/cluster/cluster_crash_guard.py).
        self.guard = ClusterCrashGuard(client, self.group, self.kafka.faces_topic)

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Clusters faces until ``should_stop()``; the batch in hand is committed first."""
        topics = [self.kafka.faces_topic, *filter(None, (self.kafka.commands_topic, self.kafka.erasures_topic))]
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        try:
            while not should_stop():
                try:
                    placed = self.positions.place(self.writers.take_over)
                    for writer in self.writers:
                        writer.keep()
                    messages = consume_batch(self.consumer, self.config.cluster_batch_size, self.config.batch_wait_s)
                    self.health.beat()
                    if messages:
                        with self.state_lock:
                            for group in self.guard.groups(messages):
                                self.process(group)
                                self.guard.ran(group)
                    self.retention.forward(self.publisher, self.writers.names())
                    for writer in self.writers:
                        writer.snapshot_if_due()
                    self.positions.mark_quiet_spaces(self.writers)
                    self.counters.idle_releases += len(self.writers.release_idle())
                    self._working_again(placed)
                    self._report()
                except RECOVERABLE as exc:
                    self._step_down(exc)
                    pause(should_stop, self._backoff.next())
        finally:
            self._close()

    def _working_again(self, placed: bool) -> None:
        """After a failure, counts each turn as a try and the first that completes with every partition placed as
        a recovery."""
        if not self._recovering:
            return
        metrics.RECOVERY_ATTEMPTS.labels("cluster").inc()
        if placed:
            metrics.RECOVERIES.labels("cluster").inc()
            self._recovering = False
            self._backoff.reset()

    def _report(self) -> None:
        metrics.WRITER.set(len(self.writers))
        if self._recovering:
            return  # not ready, with the failure's reason, until a turn completes with every partition placed
        metrics.CLUSTERS.set(sum(w.engine.cluster_count for w in self.writers if w.engine is not None))
        if not self.positions.assigned:
            self.health.standby(f"standby: no partition of {self.kafka.faces_topic} is assigned to this worker")
        elif self.positions.waiting:
            self.health.standby(f"standby: waiting for the writer lease of {', '.join(sorted(self.positions.waiting))}")
        else:
            self.health.ready()

    # -- partitions and spaces -----------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Commands partitions are read from their committed offsets. Faces partitions are placed by the loop,
        # outside the callback: where one is read from needs Redis and Kafka calls.
        consumer.incremental_assign(partitions)
        faces = [tp for tp in partitions if tp.topic == self.kafka.faces_topic]
        consumer.pause(faces)
        self.positions.assign([tp.partition for tp in faces])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Between batches: nothing of these partitions is uncommitted.
        gone = {tp.partition for tp in partitions if tp.topic == self.kafka.faces_topic}
        self.writers.give_up(gone)
        self.positions.revoke(gone)
        self.guard.revoked(gone)
        consumer.incremental_unassign(partitions)

    # -- the batch ---------------------------------------------------------------------------------------------

    def process(self, messages: list[Message]) -> None:
        """Applies a batch to the state and publishes its events and offsets in one Kafka transaction."""
        metrics.BATCH_SIZE.labels("cluster").observe(len(messages))
        started = time.perf_counter()
        taken: list[tuple[Message, ClusterInput | MessageError | SpaceRefusedError, SpaceWriter | None]] = []
        commands: list[tuple[Message, Command | MessageError]] = []
        for message in messages:
            error = message.error()
            if error is not None:
                on_consumer_error(error, self.health)
                continue
            if message.topic() != self.kafka.faces_topic:
                topic, erasures = message.topic() or "", self.kafka.erasures_topic
                commands.append((message, command_or_error(message.value(), topic, erasures)))
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            if not self.positions.reading(partition):
                continue  # read before the partition was placed or after it stopped: it is read again
            metrics.MESSAGES_CONSUMED.labels(message.topic() or "").inc()
            try:
                parsed = parse_cluster_input(message.value())
            except MessageError as exc:
                taken.append((message, exc, None))
                continue
            writer = self.writers.take_over(parsed.space, partition)
            if writer is None:
                self.positions.wait(partition, offset, parsed.space)  # read from here once the lease is free
                continue
            if isinstance(writer, SpaceRefusedError):
                taken.append((message, writer, None))
                continue
            taken.append((message, parsed, writer))
        if not taken and not commands:
            return
        self.publisher.begin()
        for message, command in commands:
            self._forward(message, command)
        writers = {id(w): w for _, _, w in taken if w is not None}.values()
        dimension = self.config.dimension
        # Each space's faces and events reach Redis in one round trip at the end of the block, before the
        # transaction that publishes them commits (a failure in between leaves them in the outbox).
        with ExitStack() as stack:
            for writer in writers:
                stack.enter_context(writer.store.batch())
                writer.expect((r for _, r, w in taken if w is writer and not isinstance(r, Exception)), dimension)
            for message, record, writer in taken:
                self._one(message, record, writer)
        metrics.STAGE_SECONDS.labels("cluster").observe(time.perf_counter() - started)
        committing = time.perf_counter()
        offsets = next_offsets([message for message, _, _ in taken] + [message for message, _ in commands])
        self.publisher.commit(offsets)
        self.positions.committed([tp for tp in offsets if tp.topic == self.kafka.faces_topic])
        metrics.STAGE_SECONDS.labels("publish").observe(time.perf_counter() - committing)
        for writer in writers:
            writer.committed()
        # The engines hold millions of long-lived objects: without this, each full collection of Python's
        # garbage collector walks them all (200 ms at 60,000 faces, growing with the space) inside a batch.
        gc.freeze()

    def _forward(self, message: Message, command: Command | MessageError) -> None:
        """A command goes into the faces topic, where its space's writer applies it in order with the faces."""
        if isinstance(command, MessageError):  # nothing before read it: it is refused once
            self._refuse(message, str(command.reason), command, publish=True)
            return
        self.publisher.forward(command.space, message.value() or b"")
        self.counters.commands += 1

    def _one(
        self,
        message: Message,
        record: ClusterInput | MessageError | SpaceRefusedError,
        writer: SpaceWriter | None,
    ) -> None:
        at = (message.partition() or 0, message.offset() or 0)
        publish = at[1] >= self.positions.published_below(at[0])
        if isinstance(record, MessageError | SpaceRefusedError):
            self._refuse(message, str(record.reason), record, publish)
            return
        if writer is None:
            raise RuntimeError(f"no writer for the record at {at}")  # process() pairs every record with one
        if (poison := self._poisoned.error_of(at)) is not None:
            self._refuse(message, StageFailure.PROCESSING_FAILED, poison, publish)
            return
        if (crashed := self.guard.refusal(*at)) is not None:
            self._refuse(message, StageFailure.CRASHED_WORKER, crashed, publish)
            return
        try:
            outcome, entries = writer.apply(record, self.config.dimension, at)
        except MessageError as exc:
            self._refuse(message, str(exc.reason), exc, publish)
            return
        except RECOVERABLE:
            raise
        except Exception as exc:
            raise PoisonRecordError(*at, exc) from exc
        self.counters.count(record, outcome, entries)
        if publish:
            for entry in entries:
                self.publisher.events(writer.space, entry)

    def _refuse(self, message: Message, reason: str, error: Exception, publish: bool) -> None:
        if publish:  # else it was dead-lettered before, by whoever first read it
            self.publisher.dead_letter(message, reason, error)
            self.counters.dead_letters[reason] += 1

    # -- failure and stop --------------------------------------------------------------------------------------

    def _step_down(self, exc: Exception) -> None:
        """Drops everything held in memory; the loop rebuilds it from Redis and Kafka."""
        log.error(
            "cluster worker recovering from %s: %s; nothing is committed past the state in Redis",
            type(exc).__name__,
            exc,
        )
        self.health.not_ready(f"{type(exc).__name__}: {exc}"[:300])
        if isinstance(exc, PoisonRecordError):
            log.error("the record is dead-lettered when it is read again", exc_info=exc.cause)
            self._poisoned.add(exc)
        if isinstance(exc, RedisError | StoreError):
            metrics.REDIS_ERRORS.inc()
        self._recovering = True
        self.publisher.abandon(exc)
        self.writers.release_all()
        self.positions.unplace()
        metrics.WRITER.set(0)

    def engine_of(self, space: str) -> OnlineRankOrder | None:
        """The engine of ``space`` if this worker writes it now."""
        return self.writers.engine_of(space)

    def summary(self) -> str:
        return self.counters.summary()

    def _close(self) -> None:
        self.writers.release_all(hand_over=not self._recovering)
        metrics.WRITER.set(0)
        self.consumer.close()
