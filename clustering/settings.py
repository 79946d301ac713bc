"""Settings of the clustering stage."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from clustering.cosine import DEFAULT_COSINE_THRESHOLD


class FrozenModel(BaseModel):
    """The base of this room's settings: immutable once validated, a field it does not know is an error (a
    misspelt setting fails at start), and errors never echo the input. Each ground room (models, clustering,
    streaming) owns this line of configuration, so that none imports another (docs/architecture.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class IndexSettings(FrozenModel):
    m: int = Field(16, ge=2, le=128, description="HNSW links per node (hnswlib M).")
    ef_construction: int = Field(
        100, ge=8, description="HNSW candidate list size while inserting (200 costs twice the time per face)."
    )
    ef: int = Field(64, ge=1, description="HNSW candidate list size while querying (raised to k when lower).")
    initial_capacity: int = Field(
        4096,
        ge=16,
        description="Items the index holds memory for at first; it doubles as it fills (the cluster worker: at 3/4).",
    )
    random_seed: int = Field(100, description="Seed of the HNSW level draws, for reproducible graphs.")
    insert_block: int = Field(
        16,
        ge=1,
        le=4096,
        description="Faces inserted into the HNSW index together, on every insert core; until its block is full "
        "a face is found by exact search among the block's faces (clustering/neighbour_search.py). The face "
        "that fills a block waits for its insert: about 5 ms for 16 at a million faces, 100 ms for 256, which "
        "cluster 10-20% faster below a million (README, Speed and memory); 1 inserts each face alone.",
    )
    insert_threads: int = Field(
        0,
        ge=0,
        description="Cores a block is inserted and queried on (0: the cores this process may use, capped by "
        "its container's CPU limit). 1 makes "
        "the graph, and so the clusters, a function of the faces' order alone; more build it faster, and the "
        "graph then depends on thread timing where HNSW is approximate.",
    )


class RankOrderSettings(FrozenModel):
    """Defaults chosen on LFW DevTrain (README, "Choosing the clustering parameters")."""

    k: int = Field(10, ge=2, le=200, description="Neighbour list length.")
    threshold: float = Field(
        1.0, gt=0.0, description="Mutual neighbours at approximate rank-order distance <= this may be linked..."
    )
    cosine_gate: float = Field(0.40, ge=-1.0, le=1.0, description="...when their cosine similarity reaches this.")
    direct_link: float = Field(
        0.45,
        ge=-1.0,
        le=1.0,
        description="Neighbours at least this similar are linked whatever their ranks (a face has no mutual "
        "neighbours yet when it is the second of its identity to arrive).",
    )
    direct_search: int = Field(
        50,
        ge=1,
        le=1000,
        description="Nearest faces searched for direct links. Wider than k because in video the k nearest are "
        "often near-copies from adjacent frames, which would keep two shots of one person apart.",
    )
    representatives: int = Field(5, ge=1, le=50, description="Best-quality faces kept per cluster summary.")
    template_faces: int = Field(
        3,
        ge=0,
        description="Clusters of at least this many faces are compared by template (the quality-weighted mean "
        "of their representatives) each time one reaches this size or doubles (0: never).",
    )
    template_link: float = Field(
        0.50,
        ge=-1.0,
        le=1.0,
        description="Two such clusters are joined when their templates' cosine reaches this: pieces of one "
        "person (tracks of one face, shots after a cut) whose faces each stayed under the gates.",
    )
    snapshot_every: int = Field(
        25_000,
        ge=0,
        description="Faces between snapshots of the HNSW index in Redis, stored by a forked child of the writer "
        "(0: never). A restart loads the latest and inserts the faces after it again: at most this many, the "
        "longest part of a restart of a large space (README, Speed and memory).",
    )


class ClusteringSettings(FrozenModel):
    cosine_threshold: float = Field(
        DEFAULT_COSINE_THRESHOLD,
        ge=-1.0,
        le=1.0,
        description="Cosine-threshold clustering (the yardstick): faces this similar share a cluster.",
    )
    index: IndexSettings = IndexSettings()
    rank_order: RankOrderSettings = RankOrderSettings()
    erasure_step_faces: int = Field(
        2_000,
        ge=1,
        description="A forget of more faces is applied in steps of at most this many, each one atomic write to "
        "Redis (each forgotten face rewrites the neighbour lists it is in), so no erasure holds Redis for long.",
    )
    retention_days: float = Field(
        0.0,
        ge=0.0,
        description="The cluster stage forgets (erases) faces it stored longer ago than this, continuously, as "
        "forget commands of its own; 0: keep them until a forget command.",
    )
