"""The one policy of both Kafka stages for Kafka's errors: those the consumer hands over instead of a message,
and those librdkafka reports about the brokers themselves (``error_cb``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException

from streaming.kafka_io import TRANSIENT_ERRORS
from streaming.redact import redact
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


def broker_errors(health: metrics.Health, bootstrap: str) -> Callable[[KafkaError], None]:
    """librdkafka's ``error_cb`` for a stage: unreachable brokers make it not-ready, naming them."""

    def report(error: KafkaError) -> None:
        metrics.KAFKA_ERRORS.labels(health.role).inc()
        if error.code() in TRANSIENT_ERRORS:
            # One reason for as long as it lasts (librdkafka's own lines, rate-limited, carry the details).
            health.not_ready(f"Kafka unreachable at {redact(bootstrap)}")
            return
        log.log(logging.ERROR if error.fatal() else logging.WARNING, "Kafka (%s stage): %s", health.role, error)

    return report
