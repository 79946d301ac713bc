"""The one configuration tree: defaults, then FACESTREAM_* environment variables, then command-line flags.

Nested fields use a double underscore in the environment: FACESTREAM_MODELS__DETECTOR__MODEL=retinaface-mnet025.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from clustering.redis_state.redis_client import RedisAddress
from clustering.settings import ClusteringSettings
from models.settings import ModelSettings, TrackingSettings
from streaming.decode import DEFAULT_MAX_PIXELS
from streaming.frozen import FrozenModel
from streaming.messages import SpaceName
from streaming.redact import read_secret
from streaming.settings import KafkaSettings, SourceSettings


class RunSettings(FrozenModel):
    batch_size: int = Field(8, ge=1, le=256, description="Frames per detector batch.")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="Larger images are refused undecoded.")
    gallery_faces_per_cluster: int = Field(24, ge=1, description="Thumbnails shown per cluster in index.html.")


class WorkerSettings(FrozenModel):
    """The Kafka workers (`facestream worker`)."""

    cluster_group: str = Field(
        "facestream-cluster",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Consumer group of the cluster workers: they share the faces topic's partitions, and each writes "
        "the identity spaces of the partitions it holds (the faces topic is keyed by space).",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis holding the clustering state: redis://[USER[:PASSWORD]@]HOST:PORT/DB, rediss:// for TLS.",
    )
    redis_cluster: bool = Field(
        False,
        description="redis_url names a node of a Redis Cluster: each identity space lives in one slot of one master.",
    )
    redis_password_file: Path | None = Field(
        None,
        description="A file holding Redis's password (a Docker or Kubernetes secret); overrides one in redis_url.",
    )
    redis_ca_file: Path | None = Field(
        None,
        description="CA certificate(s) that sign the certificate of a rediss:// (TLS) Redis; default: the system's.",
    )
    dimension: int = Field(512, ge=1, le=8192, description="Embedding size the cluster worker accepts.")
    frame_max_pixels: int = Field(
        16_000_000,
        ge=1,
        description="Larger frames are refused undecoded by the embed stage: 4K UHD (8.3 MP) and 12 MP sensors "
        "pass, and one decoded frame takes at most 48 MB (photos, in run and search, have run.max_pixels).",
    )
    appearances_kept: int = Field(
        1_000,
        ge=1,
        le=100_000,
        description="Appearances each identity's timeline keeps in Redis (the newest; about 0.4 KB each, and "
        "the picture of its best face when the writer held it): what the API and the console answer 'where and "
        "when was this person seen' from.",
    )
    thumbnail_quality: int = Field(
        45,
        ge=0,
        le=100,
        description="WebP quality of the aligned 112x112 face each embedded face record carries as `thumbnail` "
        "(0: no thumbnail): the console's faces, and whatever shows faces downstream. About 0.9 KB at 45 "
        "(1.2 KB more a record as base64); the cluster stage keeps those of each identity's best faces.",
    )
    pictures_per_identity: int = Field(
        3,
        ge=0,
        le=50,
        description="Pictures the cluster stage keeps in Redis of each identity's best faces (of its "
        "representatives, at most clustering.rank_order.representatives), for the console: at 3 and WebP "
        "quality 45 a million faces stay under 2.5 KB each in Redis (README, 'Faces in the service').",
    )
    batch_max_pixels: int = Field(
        64_000_000,
        ge=1,
        description="Decoded pixels an embed batch holds at once (about 3 bytes each); a batch of larger frames "
        "is run through the pipeline in parts.",
    )
    batch_wait_s: float = Field(
        0.05,
        ge=0,
        le=60,
        description="Once a batch has its first message, the longest wait for more (batches fill at once under "
        "load; a quiet stream is not held back).",
    )
    cluster_batch_size: int = Field(
        256, ge=1, le=10_000, description="Faces per cluster-worker batch (one Kafka transaction each)."
    )
    lease_ttl_s: float = Field(
        10.0, gt=0.5, le=300, description="Writer lease of an identity space; a standby takes over once it lapses."
    )
    spaces: tuple[SpaceName, ...] = Field(
        (),
        description="The identity spaces the cluster stage may write (an allow-list); empty: any. A record of "
        "another is a space_not_allowed dead letter.",
    )
    max_spaces: int = Field(
        1000,
        ge=1,
        description="New identity spaces one cluster worker takes on at most (each holds an index and a lease "
        "thread); a record of one more is a too_many_spaces dead letter. Spaces with faces already are kept.",
    )
    space_idle_s: float = Field(
        3600.0,
        ge=0.0,
        description="A space with no record for this long is handed over: its index leaves the worker's memory "
        "and its partition's registry (its state stays in Redis; its next record takes it over again). 0: never.",
    )
    instance_id: str = Field(
        "",
        max_length=200,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Static group membership of a worker (Kafka group.instance.id): restarted with the same "
        "id within the session timeout, it gets its partitions back with no rebalance. A name stable across "
        "restarts and unique in the group, e.g. a StatefulSet pod's name; empty: dynamic membership.",
    )
    writer_stall_s: float = Field(
        60.0,
        gt=0,
        description="A writer whose loop makes no progress this long stops renewing its lease, so a standby takes "
        "over (the lease itself is renewed by its own thread, however long a batch takes).",
    )
    retry_max_s: float = Field(30.0, gt=0, description="Longest wait between retries while Kafka or Redis is down.")
    metrics_host: str = Field("0.0.0.0", description="Address of /metrics, /healthz and /readyz.")  # noqa: S104
    metrics_port: int = Field(9400, ge=0, le=65535, description="Port of /metrics, /healthz and /readyz (0: none).")
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object per log line.")
    api_host: str = Field(
        "127.0.0.1", description="Address of the identity API (biometric data: keep it local unless you must)."
    )
    api_port: int = Field(
        0, ge=0, le=65535, description="Port of the cluster stage's identity API (list, show, search); 0: off."
    )
    api_token_file: Path | None = Field(
        None, description="A file holding the identity API's bearer token; required when api_port is set."
    )

    def redis_address(self) -> RedisAddress:
        """Where the clustering state is, with the password read from its file now."""
        ca_file = None if self.redis_ca_file is None else str(self.redis_ca_file)
        return RedisAddress(self.redis_url, read_secret(self.redis_password_file), self.redis_cluster, ca_file)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACESTREAM_", env_nested_delimiter="__", frozen=True, extra="forbid", hide_input_in_errors=True
    )

    models: ModelSettings = ModelSettings()
    tracking: TrackingSettings = TrackingSettings()
    clustering: ClusteringSettings = ClusteringSettings()
    run: RunSettings = RunSettings()
    kafka: KafkaSettings = KafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    sources: SourceSettings = SourceSettings()


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with ``overrides`` (nested dicts, e.g. from flags) taking precedence."""
    return Settings(**overrides)
