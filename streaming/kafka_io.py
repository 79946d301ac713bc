"""Helpers shared by the Kafka workers: consumer positions, batches and log context of consumed messages."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

#: Errors librdkafka reports while it reconnects on its own: the worker says it is not ready and waits.
TRANSIENT_ERRORS = frozenset(
    {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._RESOLVE}
)


def where(message: Message) -> str:
    """topic[partition]@offset, for log lines."""
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"


def log_context(message: Message) -> dict[str, object]:
    """Fields a structured log line carries for an error on ``message``."""
    return {"topic": message.topic(), "partition": message.partition(), "offset": message.offset()}


def next_offsets(messages: list[Message]) -> list[TopicPartition]:
    """Offsets to commit after ``messages``: one past the last message of each partition."""
    offsets: dict[tuple[str, int], int] = {}
    for message in messages:
        if message.error() is None:
            key = (message.topic() or "", message.partition() or 0)
            offsets[key] = max(offsets.get(key, -1), (message.offset() or 0) + 1)
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]


def first_offsets(messages: list[Message]) -> list[TopicPartition]:
    """Where to seek to consume ``messages`` again: the first offset of each partition among them."""
    offsets: dict[tuple[str, int], int] = {}
    for message in messages:
        if message.error() is None:
            key = (message.topic() or "", message.partition() or 0)
            offsets[key] = min(offsets.get(key, message.offset() or 0), message.offset() or 0)
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]


def consume_batch(consumer: Consumer, size: int, linger_s: float, idle_s: float = 0.5) -> list[Message]:
    """Up to ``size`` messages: waits up to ``idle_s`` for the first, then at most ``linger_s`` for the rest.

    Under load batches fill at once; on a quiet stream a lone frame is not held back waiting for company.
    """
    first = consumer.poll(idle_s)
    if first is None:
        return []
    if size == 1:
        return [first]
    return [first, *consumer.consume(num_messages=size - 1, timeout=linger_s)]
