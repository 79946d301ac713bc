"""Settings of the Kafka side."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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
    erasures_topic: str = Field(
        "",
        description="Forget commands in, apart from the other corrections: when set, a forget on the commands "
        "topic is refused (erasure_not_allowed), so only who may write this topic can erase; empty: forgets come "
        "on the commands topic.",
    )
    session_timeout_ms: int = Field(
        45_000,
        ge=1_000,
        le=3_600_000,
        description="A consumer silent this long is dropped from its group and its partitions reassigned.",
    )
    max_message_bytes: int = Field(
        1_000_000,
        ge=10_000,
        le=50_000_000,
        description="The largest record a worker produces (librdkafka message.max.bytes): dead letters and events "
        "are cut or split to fit. At most the topics' max.message.bytes (the broker's default: 1,048,588).",
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
            "message.max.bytes": self.max_message_bytes,
            **self.client,
            **secret,
            **overrides,
        }


class SourceSettings(FrozenModel):
    """How `facestream produce` and `facestream run` read their sources, live cameras above all."""

    cameras_file: Path | None = Field(
        None,
        description="A camera list (TOML: one [[camera]] table per camera with id, url and optionally space, "
        "max_fps, max_size, transport) read by `facestream produce` and `run` besides their SOURCE arguments.",
    )
    max_size: int | None = Field(
        None,
        ge=0,
        description="Frames are scaled down at the edge so that their long side is at most this (aspect kept); "
        "0: full size. Unset: `produce` uses the detector's input side (640 by default), `run` full size.",
    )
    max_fps: float | None = Field(
        None, gt=0, description="Frames per second kept of each source at most; unset: all of them."
    )
    open_timeout_s: float = Field(10.0, gt=0, description="Longest wait to connect to a live stream.")
    read_timeout_s: float = Field(
        5.0, gt=0, description="Longest silence on an open live stream before it counts as dropped."
    )
    reconnect_first_s: float = Field(0.5, gt=0, description="Wait before the first reconnection after a drop.")
    reconnect_max_s: float = Field(
        30.0, gt=0, description="Longest wait between reconnections (the wait doubles after each failed try)."
    )
    max_retries: int | None = Field(
        None,
        ge=0,
        description="Failed reconnections in a row after which a live source is given up (the command then "
        "exits 1); unset: try forever.",
    )
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport of live streams.")
    live_queue: int = Field(
        2,
        ge=1,
        le=100,
        description="Newest frames of a live source kept waiting while the consumer is busy; older ones are "
        "dropped as stale (facestream_producer_frames_dropped_total).",
    )
    metrics_port: int = Field(
        9401, ge=0, le=65535, description="Port of `facestream produce`'s /metrics, /healthz and /readyz (0: none)."
    )
    metrics_host: str = Field("0.0.0.0", description="Address of the producer's /metrics.")  # noqa: S104
