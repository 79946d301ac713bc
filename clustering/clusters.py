"""Which faces are one person: the union-find over face labels, the links that joined each cluster, and what
may never be joined (faces of one frame, tracks seen together, faces a correction separated, two names).

Union-find cannot split, so every union keeps its link (the two faces and their similarity, in an
append-only log): a correction that cuts a cluster recomputes the cluster's connected components over its
links, without the links that cross the cut.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from clustering.packed import Link
from clustering.store import ClusterSummary, FaceMeta, Marks
from clustering.union_find import UnionFind


@dataclass(slots=True)
class Cluster:
    size: int
    first_seen: float
    last_seen: float
    cameras: set[str]
    representatives: list[tuple[float, str]]
    name: str | None = None
    frames: set[str] = field(default_factory=set)
    tracks: set[str] = field(default_factory=set)
    #: Tracks seen in one frame with a track of this cluster: other people.
    excluded: set[str] = field(default_factory=set)
    #: The sides of the corrections its faces were on.
    sides: Marks = field(default_factory=dict)

    @classmethod
    def of(cls, summary: ClusterSummary) -> Cluster:
        return cls(
            summary.size,
            summary.first_seen,
            summary.last_seen,
            set(summary.cameras),
            list(summary.representatives),
            summary.name,
        )

    def conflicts(self, other: Cluster) -> bool:
        """True when the two clusters hold faces known to be of different people."""
        return (
            not self.frames.isdisjoint(other.frames)
            or not self.tracks.isdisjoint(other.excluded)
            or not other.tracks.isdisjoint(self.excluded)
            or (self.name is not None and other.name is not None and self.name != other.name)
            or any(other.sides.get(constraint, side) != side for constraint, side in self.sides.items())
        )

    def note(self, meta: FaceMeta, marks: Marks | None = None) -> None:
        if meta.frame_key:
            self.frames.add(meta.frame_key)
        if meta.track:
            self.tracks.add(meta.track)
        self.excluded.update(meta.cooccurring)
        if marks:
            self.sides.update(marks)

    def absorb(self, other: Cluster, keep: int) -> None:
        self.size += other.size
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.cameras |= other.cameras
        self.representatives = sorted(self.representatives + other.representatives, key=lambda r: (-r[0], r[1]))[:keep]
        self.name = self.name if self.name is not None else other.name
        self.frames |= other.frames
        self.tracks |= other.tracks
        self.excluded |= other.excluded
        self.sides |= other.sides

    def summary(self, cluster_id: int) -> ClusterSummary:
        return ClusterSummary(
            cluster_id,
            self.size,
            self.first_seen,
            self.last_seen,
            tuple(sorted(self.cameras)),
            tuple(self.representatives),
            self.name,
        )


def cluster_of_faces(metas: Sequence[FaceMeta], marks: Sequence[Marks | None], keep: int) -> Cluster:
    """The cluster of these faces, recomputed from their metadata (after a correction cut one)."""
    cluster = Cluster(
        len(metas),
        min(m.timestamp for m in metas),
        max(m.timestamp for m in metas),
        {m.camera for m in metas if m.camera},
        sorted(((m.quality, m.face_id) for m in metas), key=lambda r: (-r[0], r[1]))[:keep],
    )
    for meta, face_marks in zip(metas, marks, strict=True):
        cluster.note(meta, face_marks)
    return cluster


class LinkLog:
    """Every union's link, packed (16 bytes a link), with the field it is stored under: the label of the face
    whose arrival made it, or ``c:<command id>`` for a merge's."""

    def __init__(self) -> None:
        self._a = array("i")
        self._b = array("i")
        self._similarity = array("f")
        #: A face label, or -(i + 1) for the i-th of ``_command_fields``.
        self._owner = array("i")
        self._command_fields: list[str] = []

    def __len__(self) -> int:
        return len(self._a)

    def add(self, links: Iterable[Link], field: str) -> None:
        links = list(links)
        if not links:
            return
        if field.isdigit():
            owner = int(field)
        else:
            self._command_fields.append(field)
            owner = -len(self._command_fields)
        for a, b, similarity in links:
            self._a.append(a)
            self._b.append(b)
            self._similarity.append(similarity)
            self._owner.append(owner)

    def within(self, members: Sequence[int]) -> list[Link]:
        """The links between two of ``members``."""
        if not len(self._a):
            return []
        a = np.frombuffer(self._a, np.int32)
        b = np.frombuffer(self._b, np.int32)
        wanted = np.asarray(members, np.int32)
        inside = np.flatnonzero(np.isin(a, wanted) & np.isin(b, wanted))
        return [(int(a[i]), int(b[i]), float(self._similarity[i])) for i in inside]

    def drop(self, labels: Iterable[int]) -> dict[str, tuple[Link, ...]]:
        """Drops the links touching ``labels``; returns what each field that lost one holds now."""
        if not len(self._a):
            return {}
        a, b = np.frombuffer(self._a, np.int32), np.frombuffer(self._b, np.int32)
        owner = np.frombuffer(self._owner, np.int32)
        gone = np.asarray(sorted(labels), np.int32)
        touching = np.isin(a, gone) | np.isin(b, gone)
        if not touching.any():
            return {}
        changed = set(owner[touching].tolist())
        keep = ~touching
        similarity = np.frombuffer(self._similarity, np.float32)
        self._a, self._b, self._owner = (_packed("i", column[keep]) for column in (a, b, owner))
        self._similarity = _packed("f", similarity[keep])
        kept_owner = np.frombuffer(self._owner, np.int32)
        result: dict[str, tuple[Link, ...]] = {}
        for field_owner in sorted(changed):
            rows = np.flatnonzero(kept_owner == field_owner)
            field = str(field_owner) if field_owner >= 0 else self._command_fields[-field_owner - 1]
            result[field] = tuple((self._a[i], self._b[i], self._similarity[i]) for i in rows)
        return result


def _packed(code: str, values: NDArray[np.int32] | NDArray[np.float32]) -> array[Any]:
    packed = array(code)
    packed.frombytes(values.tobytes())
    return packed


def components(members: Sequence[int], links: Iterable[Link]) -> list[list[int]]:
    """The connected components of ``members`` over ``links``, each sorted, ordered by their smallest face."""
    position = {label: i for i, label in enumerate(members)}
    sets = UnionFind()
    for _ in members:
        sets.add()
    for a, b, _ in links:
        sets.union(position[a], position[b])
    groups: dict[int, list[int]] = {}
    for label in members:
        groups.setdefault(sets.find(position[label]), []).append(label)
    return sorted((sorted(group) for group in groups.values()), key=lambda group: group[0])


def members_of(sets: UnionFind, root: int) -> list[int]:
    """The faces of the cluster ``root``, found over the whole parent array at numpy speed."""
    # A copy of the buffer (a memcpy): a view would keep the union-find from growing while it lived.
    parents = np.frombuffer(sets.parents(), np.intc).copy()
    roots = parents
    while True:
        deeper = parents[roots]
        if np.array_equal(deeper, roots):
            break
        roots = deeper
    return np.flatnonzero(roots == root).tolist()
