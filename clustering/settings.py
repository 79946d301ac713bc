"""Settings of the clustering stage."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from clustering.cosine import DEFAULT_COSINE_THRESHOLD


class ClusteringSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cosine_threshold: float = Field(
        DEFAULT_COSINE_THRESHOLD,
        ge=-1.0,
        le=1.0,
        description="Two faces at least this similar (cosine of unit embeddings) share a cluster.",
    )
