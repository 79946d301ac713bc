"""Settings of the Kafka side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from streaming.frozen import FrozenModel
from streaming.kafka_logs import kafka_logger
from streaming.redact import read_secret


class KafkaSettings(FrozenModel):
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    frames_topic: str = Field("facestream.frames", description="JPEG frames in (key: camera id).")
    faces_topic: str = Field("facestream.faces", description="Face records from the embed stage.")
    identities_topic: str = Field("facestream.identities", description="Assignments and merges out.")
    dead_letter_topic: str = Field("facestream.dead-letters", description="Unusable input with its reason.")
    commands_topic: str = Field(
        "facestream.commands",
        description="Corrections in (merge, split, reject, label; key: identity space), read by the cluster "
        "stage; empty: none.",
    )
    session_timeout_ms: int = Field(
        45_000,
        ge=1_000,
        le=3_600_000,
        description="A consumer silent this long is dropped from its group and its partitions reassigned.",
    )
    client: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka settings passed through as they are, e.g. security.protocol, "
        "sasl.mechanism, sasl.username, ssl.ca.location.",
    )

    sasl_password_file: Path | None = Field(
        None,
        description="A file holding the SASL password (a Docker or Kubernetes secret), passed as sasl.password.",
    )

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        password = read_secret(self.sasl_password_file)
        secret = {"sasl.password": password} if password is not None else {}
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "logger": kafka_logger(),  # librdkafka's lines through the project's logger, rate-limited
            **self.client,
            **secret,
            **overrides,
        }
