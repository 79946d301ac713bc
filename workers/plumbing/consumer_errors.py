"""The one policy of both Kafka stages for Kafka's errors: those the consumer hands over instead of a message,
and those librdkafka reports about the brokers themselves (``error_cb``); and the one consumer both stages
build on it."""

from __future__ import annotations

import json
import logging
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException

from streaming.kafka_io import TRANSIENT_ERRORS
from streaming.kafka_logs import kafka_logger
from streaming.redact import redact
from streaming.settings import KafkaSettings
from workers.plumbing import metrics

log = logging.getLogger(__name__)


def stage_consumer(
    kafka: KafkaSettings, group: str, instance_id: str | None, brokers: BrokerWatch, **extra: Any
) -> Consumer:
    """A stage's consumer: offsets committed by the stage only (after its outputs are durable), a new group
    read from the start, incremental rebalances (members keep their partitions while others come and go), a
    static membership when ``instance_id`` is set, and ``brokers`` watching its connections."""
    return Consumer(
        kafka.client_config(
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                **({"group.instance.id": instance_id} if instance_id else {}),
                "session.timeout.ms": kafka.session_timeout_ms,
                **brokers.callbacks(),
                **extra,
            }
        )
    )


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


class BrokerWatch:
    """librdkafka's error and statistics callbacks for one stage's clients: when no broker can be reached the
    stage is not-ready, naming them, at once; the first statistics (every 5 s) that show a broker up again make
    it ready. Other errors are logged (a dropped connection alone is librdkafka's to retry)."""

    REASON = "Kafka unreachable at"
    REFUSED = "Kafka refused the credentials at"

    def __init__(self, health: metrics.Health, bootstrap: str) -> None:
        self.health = health
        self.bootstrap = redact(bootstrap)

    def callbacks(self) -> dict[str, Any]:
        """The client settings that install the callbacks."""
        return {"error_cb": self.error, "stats_cb": self.statistics, "statistics.interval.ms": 5000}

    def error(self, error: KafkaError) -> None:
        metrics.KAFKA_ERRORS.labels(self.health.role).inc()
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            # Not one connection dropping (a broker restarting in a healthy cluster), but none left.
            # One reason for as long as it lasts (librdkafka's own lines, rate-limited, carry the details).
            self.health.block(f"{self.REASON} {self.bootstrap}")
            return
        if error.code() == KafkaError._AUTHENTICATION:
            # A wrong password or user: librdkafka keeps retrying, and nothing works until it is fixed.
            self.health.block(f"{self.REFUSED} {self.bootstrap}: {error.str()}")
        level = logging.ERROR if error.fatal() else logging.WARNING
        kafka_logger().log(level, "Kafka (%s stage): %s", self.health.role, error)  # rate-limited with librdkafka's

    def statistics(self, statistics_json: str) -> None:
        stats: dict[str, Any] = json.loads(statistics_json)
        metrics.record_lag(stats)
        brokers: dict[str, dict[str, Any]] = stats.get("brokers", {})
        if any(broker.get("state") == "UP" for broker in brokers.values()):
            self.health.unblock(self.REASON)
            self.health.unblock(self.REFUSED)
