"""What clustering reports to its caller: one assignment per face, and merges of clusters."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Merge:
    survivor: int
    absorbed: tuple[int, ...]


@dataclass(frozen=True)
class FaceAssignment:
    face_id: str
    cluster_id: int
    #: Clusters this face joined together; the oldest survives and keeps its id.
    merges: tuple[Merge, ...] = ()


@dataclass(frozen=True)
class Merged:
    """A `merge` correction joined these clusters; the oldest survives and keeps its id."""

    command_id: str
    survivor: int
    absorbed: tuple[int, ...]


@dataclass(frozen=True)
class Split:
    """A `split` or `reject` correction cut ``cluster``: ``parts`` are the clusters its faces are in now, each
    (cluster id, face ids); the faces a part holds are never joined to another part's again."""

    command_id: str
    cluster: int
    parts: tuple[tuple[int, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Labelled:
    command_id: str
    cluster: int
    name: str | None


@dataclass(frozen=True)
class Forgotten:
    """A `forget` correction erased ``faces`` (a tombstone: delete them too); the clusters they left are now
    ``parts`` (each (cluster id, face ids)), and ``removed`` clusters had no face left."""

    command_id: str
    faces: tuple[str, ...]
    parts: tuple[tuple[int, tuple[str, ...]], ...]
    removed: tuple[int, ...]


@dataclass(frozen=True)
class Conflict:
    """A correction that contradicts an earlier one (or what the faces show) and changed nothing."""

    command_id: str
    reason: str


CorrectionOutcome = Merged | Split | Labelled | Forgotten | Conflict


def outcome_json(outcome: CorrectionOutcome) -> str:
    kinds = {Merged: "merged", Split: "split", Labelled: "labelled", Forgotten: "forgotten", Conflict: "conflict"}
    kind = kinds[type(outcome)]
    return json.dumps({"type": kind, **shallow_record(outcome)}, separators=(",", ":"))


def shallow_record(instance: Any) -> dict[str, Any]:
    """A dataclass's fields by name, as they are: for records of numbers, strings and tuples of them, which json
    writes as they are. ``dataclasses.asdict`` deep-copies each (a fifth of a split's time, with its face ids;
    a tenth of the writer's Python per face, with the cluster summaries)."""
    return {field.name: getattr(instance, field.name) for field in fields(instance)}


def outcome_from_json(raw: str) -> CorrectionOutcome:
    data: dict[str, Any] = json.loads(raw)
    kind = data.pop("type")
    if kind == "merged":
        return Merged(data["command_id"], data["survivor"], tuple(data["absorbed"]))
    if kind == "split":
        parts = tuple((cluster, tuple(faces)) for cluster, faces in data["parts"])
        return Split(data["command_id"], data["cluster"], parts)
    if kind == "labelled":
        return Labelled(data["command_id"], data["cluster"], data["name"])
    if kind == "forgotten":
        parts = tuple((cluster, tuple(faces)) for cluster, faces in data["parts"])
        return Forgotten(data["command_id"], tuple(data["faces"]), parts, tuple(data["removed"]))
    return Conflict(data["command_id"], data["reason"])
