"""The one configuration tree: defaults, then FACESTREAM_* environment variables, then command-line flags.

Nested fields use a double underscore in the environment: FACESTREAM_MODELS__DETECTOR__MODEL=retinaface-mnet025.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from clustering.settings import ClusteringSettings
from models.settings import ModelSettings
from streaming.decode import DEFAULT_MAX_PIXELS
from streaming.settings import KafkaSettings


class RunSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int = Field(8, ge=1, le=256, description="Frames per detector batch.")
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="Larger images are refused undecoded.")
    gallery_faces_per_cluster: int = Field(24, ge=1, description="Thumbnails shown per cluster in index.html.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACESTREAM_", env_nested_delimiter="__", frozen=True, extra="forbid")

    models: ModelSettings = ModelSettings()
    clustering: ClusteringSettings = ClusteringSettings()
    run: RunSettings = RunSettings()
    kafka: KafkaSettings = KafkaSettings()


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with ``overrides`` (nested dicts, e.g. from flags) taking precedence."""
    return Settings(**overrides)
