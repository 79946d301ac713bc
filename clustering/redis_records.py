"""The records of the clustering state in Redis: per-face metadata, cluster summaries (JSON) and the outbox
entries of applied faces and corrections."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from clustering.events import Merge
from clustering.store import ClusterSummary, FaceMeta


@dataclass(frozen=True)
class OutboxEntry:
    """The events of one applied face, kept in Redis until they are published."""

    partition: int
    offset: int
    face_id: str
    cluster: int
    merges: tuple[Merge, ...]
    camera: str
    timestamp: float
    #: A track's appearance event (JSON) to publish instead of an assignment.
    appearance: str | None = None
    #: A correction's outcome (clustering/corrections.py, JSON) to publish instead; face_id is its command id.
    correction: str | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["merges"] = [[m.survivor, list(m.absorbed)] for m in self.merges]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> OutboxEntry:
        data: dict[str, Any] = json.loads(raw)
        data["merges"] = tuple(Merge(int(s), tuple(int(a) for a in absorbed)) for s, absorbed in data["merges"])
        return cls(**data)


def summary_json(summary: ClusterSummary) -> str:
    return json.dumps(asdict(summary), separators=(",", ":"))


def parse_summary(raw: bytes) -> ClusterSummary:
    data: dict[str, Any] = json.loads(raw)
    return ClusterSummary(
        data["id"],
        data["size"],
        data["first_seen"],
        data["last_seen"],
        tuple(data["cameras"]),
        tuple((float(q), str(f)) for q, f in data["representatives"]),
        data.get("name"),
    )


def parse_meta(raw: bytes) -> FaceMeta:
    data: dict[str, Any] = json.loads(raw)
    data["cooccurring"] = tuple(data.get("cooccurring", ()))
    return FaceMeta(**data)


def as_text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
