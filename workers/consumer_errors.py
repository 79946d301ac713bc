"""The one policy of both Kafka stages for an error the consumer hands over instead of a message."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException

from streaming.kafka_io import TRANSIENT_ERRORS
from workers import metrics

log = logging.getLogger(__name__)


def on_consumer_error(error: KafkaError, health: metrics.Health) -> None:
    """A fatal error stops the stage (raised); any other is counted and logged, and the stage goes on.

    librdkafka reconnects and retries on its own; while brokers are unreachable the stage reports not-ready.
    Nothing is committed for a message the stage did not process, so going on never loses one.
    """
    metrics.KAFKA_ERRORS.labels(health.role).inc()
    if error.fatal():
        raise KafkaException(error)
    if error.code() in TRANSIENT_ERRORS:
        health.not_ready(f"Kafka: {error.str()}")
    log.warning("Kafka consumer (%s stage): %s (librdkafka retries on its own)", health.role, error)
