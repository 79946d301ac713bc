"""The cluster stage's Kafka transactions: a batch's events, dead letters and consumer offsets commit together.

One transactional producer per worker process. Its transactional id is stable when the worker has an
instance id (a restarted worker then aborts its predecessor's open transaction at once) and unique otherwise
(a dead worker's open transaction is then aborted by the broker after ``transaction.timeout.ms``). A zombie
that lost its partitions is fenced by the consumer group's generation, which travels with the offsets.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from clustering.events import outcome_from_json
from clustering.redis_state.redis_records import OutboxEntry
from streaming.dead_letters import RECORD_OVERHEAD, dead_letter, letter_key
from streaming.event_pieces import fitted_events
from streaming.kafka_io import log_context, where
from streaming.messages import Assignment, MergeEvent
from streaming.settings import KafkaSettings
from workers.cluster.command_corrections import outcome_event
from workers.errors import WorkerError
from workers.plumbing import metrics

log = logging.getLogger(__name__)

KAFKA_TIMEOUT_S = 30.0
#: Longer than any batch takes (restores run outside transactions); a dead worker's open transaction blocks
#: readers of its partitions at most this long.
_TRANSACTION_TIMEOUT_MS = 20_000


class KafkaCallTimeoutError(WorkerError, RuntimeError):
    """A librdkafka call did not return within its deadline; its producer is abandoned."""


def bounded(call: Callable[[], None], seconds: float, what: str) -> None:
    """Runs ``call`` in a helper thread and waits at most ``seconds`` for it.

    librdkafka's send_offsets_to_transaction can block past its own timeout when the group coordinator went
    away and came back (librdkafka issues 5456 and 5511, open in 2.16; reproduced here by restarting the
    broker). The stuck call cannot be cancelled: the worker abandons that producer, and the next one fences it.
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


def transactional_id(group: str, instance_id: str) -> str:
    return f"{group}-{instance_id or uuid.uuid4().hex[:12]}"


class TransactionalPublisher:
    """Begins, fills, commits and aborts the transactions of one cluster worker."""

    def __init__(self, kafka: KafkaSettings, consumer: Consumer, transactional_id: str) -> None:
        self.kafka = kafka
        self.consumer = consumer
        self.transactional_id = transactional_id
        self._producer: Producer | None = None
        self.in_transaction = False
        #: Records produced in the open transaction, per topic: counted as produced once it commits.
        self._produced: Counter[str] = Counter()

    def begin(self) -> None:
        if self._producer is None:
            producer = Producer(
                self.kafka.client_config(
                    **{
                        "transactional.id": self.transactional_id,
                        "transaction.timeout.ms": _TRANSACTION_TIMEOUT_MS,
                        "enable.idempotence": True,
                        "linger.ms": 5,
                    }
                )
            )
            producer.init_transactions(KAFKA_TIMEOUT_S)  # fences an earlier producer of this id
            self._producer = producer
        self._producer.begin_transaction()
        self.in_transaction = True
        self._produced.clear()

    def commit(self, offsets: list[TopicPartition]) -> None:
        """Adds the consumer offsets to the open transaction and commits it."""
        producer = self._open()
        if offsets:
            metadata = self.consumer.consumer_group_metadata()
            bounded(
                lambda: producer.send_offsets_to_transaction(offsets, metadata, KAFKA_TIMEOUT_S),
                KAFKA_TIMEOUT_S + 5,
                "send_offsets_to_transaction",
            )
        producer.commit_transaction(KAFKA_TIMEOUT_S)
        self.in_transaction = False
        for topic, produced in self._produced.items():
            metrics.MESSAGES_PRODUCED.labels(topic).inc(produced)

    def abandon(self, exc: Exception) -> None:
        """Aborts the open transaction if it can; the producer is replaced at the next ``begin``."""
        if self._producer is not None and self.in_transaction and not isinstance(exc, KafkaCallTimeoutError):
            try:
                self._producer.abort_transaction(5)
            except KafkaException as abort_error:
                # A fresh producer with the same transactional id aborts the open transaction anyway.
                log.warning("could not abort the open transaction (%s); the next producer will", abort_error)
        self._producer = None
        self.in_transaction = False

    def events(self, space: str, entry: OutboxEntry) -> None:
        """Produces the events of one outbox entry: an appearance, or an assignment and its merges."""
        # Keyed by identity space: one partition holds a space's events in the order they happened, so a
        # consumer never sees a merge before the assignments it re-labels.
        key = space.encode()
        if entry.appearance is not None:
            self._produce(self.kafka.identities_topic, key, entry.appearance.encode())
            return
        if entry.correction is not None:
            outcome = outcome_event(space, outcome_from_json(entry.correction))
            for piece in fitted_events(outcome, self.kafka.max_message_bytes - RECORD_OVERHEAD):
                self._produce(self.kafka.identities_topic, key, piece.to_json())
            return
        assignment = Assignment(
            space=space, face_id=entry.face_id, cluster=entry.cluster, camera=entry.camera, timestamp=entry.timestamp
        )
        self._produce(self.kafka.identities_topic, key, assignment.to_json())
        for merge in entry.merges:
            merged = MergeEvent(
                space=space, survivor=merge.survivor, absorbed=list(merge.absorbed), face_id=entry.face_id
            )
            self._produce(self.kafka.identities_topic, key, merged.to_json())

    def forward(self, space: str, value: bytes) -> None:
        """Puts a command into the faces topic, keyed by its space: its writer applies it in order with the faces
        (the command's own offset is committed in the same transaction, so it is forwarded exactly once)."""
        self._produce(self.kafka.faces_topic, space.encode(), value)

    def dead_letter(self, message: Message, reason: str, error: Exception) -> None:
        log.warning("dead letter %s (%s): %s", where(message), reason, error, extra=log_context(message))
        letter = dead_letter(message, "cluster", reason, error, self.kafka.max_message_bytes)
        self._produce(self.kafka.dead_letter_topic, letter_key(message), letter.to_json())
        metrics.DEAD_LETTERS.labels("cluster", reason).inc()

    def _produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._open().produce(topic, key=key, value=value)
        self._produced[topic] += 1

    def _open(self) -> Producer:
        if self._producer is None or not self.in_transaction:
            raise RuntimeError("no transaction is open")
        return self._producer
