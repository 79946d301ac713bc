"""Corrections sent where the space's writer reads them: the commands topic, or the erasures topic for a forget
when one is configured. Used by `facestream identity` and by the identity API (the console's corrections)."""

from __future__ import annotations

import threading

from confluent_kafka import Producer

from streaming.commands import Command, ForgetCommand
from streaming.settings import KafkaSettings
from workers.errors import WorkerError


class CommandNotSentError(WorkerError, RuntimeError):
    """No commands topic is configured, or the broker did not take the command in time."""


class CommandSender:
    """One idempotent producer, made at the first command; ``send`` returns once the broker has the command."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = 30.0) -> None:
        self.kafka = kafka
        self.timeout_s = timeout_s
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def topic_of(self, command: Command) -> str:
        erasure = isinstance(command, ForgetCommand) and self.kafka.erasures_topic
        topic = self.kafka.erasures_topic if erasure else self.kafka.commands_topic
        if not topic:
            raise CommandNotSentError("no commands topic is configured (FACESTREAM_KAFKA__COMMANDS_TOPIC)")
        return topic

    def send(self, command: Command) -> str:
        """Delivers ``command`` keyed by its space (one partition keeps a space's commands in order); returns
        the topic it went to."""
        topic = self.topic_of(command)
        failures: list[str] = []
        with self._lock:  # one command at a time: each is confirmed before the next is sent
            if self._producer is None:
                self._producer = Producer(self.kafka.client_config(**{"enable.idempotence": True}))
            self._producer.produce(
                topic,
                key=command.space.encode(),
                value=command.to_json(),
                on_delivery=lambda error, _: failures.append(str(error)) if error else None,
            )
            if self._producer.flush(self.timeout_s) or failures:
                raise CommandNotSentError(f"the command was not delivered to {topic}: {failures or 'timeout'}")
        return topic
