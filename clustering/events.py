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
