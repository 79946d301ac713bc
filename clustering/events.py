"""What clustering reports to its caller: one assignment per face, and merges of clusters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Merge:
    survivor: int
    absorbed: tuple[int, ...]


@dataclass(frozen=True)
class Assignment:
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
