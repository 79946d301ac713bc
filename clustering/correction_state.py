"""The corrections' vocabulary: the commands as the engine takes them, why one is refused, the engine state a
correction reads and changes, what it changed, and the regrouping every cutting correction ends with
(clustering/corrections.py applies merge, split, reject and label; clustering/erasure.py applies forget).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from clustering.clusters import Cluster, LinkLog, cluster_of_faces
from clustering.errors import ClusteringError
from clustering.packed import Link, Neighbours
from clustering.store import ClusterSummary, FaceMeta, Marks
from clustering.union_find import UnionFind

MAX_NAME_LENGTH = 200


class CorrectionReason(StrEnum):
    UNKNOWN_CLUSTER = "unknown_cluster"
    UNKNOWN_FACE = "unknown_face"
    FACES_IN_SEVERAL_CLUSTERS = "faces_in_several_clusters"
    NOT_IN_CLUSTER = "not_in_cluster"
    SPLIT_OF_ALL = "split_of_all"
    NOTHING_TO_MERGE = "nothing_to_merge"
    BAD_NAME = "bad_name"
    BAD_SELECTION = "bad_selection"


class CorrectionError(ClusteringError, ValueError):
    """A correction that cannot apply; nothing changed."""

    def __init__(self, reason: CorrectionReason, command_id: str, detail: str) -> None:
        super().__init__(f"correction {command_id}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class MergeClusters:
    command_id: str
    clusters: tuple[int, ...]


@dataclass(frozen=True)
class SplitFaces:
    command_id: str
    faces: tuple[str, ...]


@dataclass(frozen=True)
class RejectFace:
    command_id: str
    face: str
    cluster: int


@dataclass(frozen=True)
class LabelCluster:
    command_id: str
    cluster: int
    name: str | None


@dataclass(frozen=True)
class ForgetFaces:
    """Erases faces: these ``faces``, a ``cluster``'s, a ``camera``'s, all seen ``before`` a Unix time, or all
    stored before one (exactly one)."""

    command_id: str
    faces: tuple[str, ...] = ()
    cluster: int | None = None
    camera: str | None = None
    before: float | None = None
    #: Faces the engine took before this Unix time (what retention forgets).
    stored_before: float | None = None
    #: A step of a cluster's erasure (clustering/erasure.py): the faces left stay one cluster, under its id.
    keep_together: bool = False


Correction = MergeClusters | SplitFaces | RejectFace | LabelCluster | ForgetFaces


@dataclass(frozen=True)
class CorrectionView:
    """The engine's clustering state a correction reads and changes (the engine's own objects)."""

    sets: UnionFind
    clusters: dict[int, Cluster]
    links: LinkLog
    marks: dict[int, Marks]
    ids: list[str]
    label_of: dict[str, int]
    metas: Callable[[list[int]], list[FaceMeta]]
    #: The faces of a camera, seen or stored before a time (a scan of the store).
    select: Callable[[str | None, float | None, float | None], list[int]]
    lists: list[array[int]]
    sims: list[array[float]]


class Change:
    """What a correction changed, collected for its delta."""

    def __init__(self) -> None:
        self.parents: dict[int, int] = {}
        self.clusters: dict[int, ClusterSummary | None] = {}
        self.marked: set[int] = set()
        self.links: dict[str, tuple[Link, ...]] = {}
        self.forgotten: dict[int, str] = {}
        self.neighbours: dict[int, Neighbours] = {}


def cluster_root(view: CorrectionView, cluster: int, command_id: str) -> int:
    if not 0 <= cluster < len(view.ids) or not view.ids[cluster]:  # "": a forgotten face's label
        raise CorrectionError(CorrectionReason.UNKNOWN_CLUSTER, command_id, f"no cluster {cluster} in this space")
    return view.sets.find(cluster)


def regroup(
    view: CorrectionView,
    groups: list[list[int]],
    naming: tuple[list[int], str | None],
    *,
    keep: int,
    change: Change,
) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """Makes each group a cluster of its own, rooted at its oldest face, its summary recomputed from its faces'
    metadata; ``naming``: the group that keeps the cut cluster's name, and the name. Returns (id, face ids)
    of each."""
    named, name = naming
    parts: list[tuple[int, tuple[str, ...]]] = []
    for group in groups:
        view.sets.regroup(group)
        metas = view.metas(group)
        cluster = cluster_of_faces(metas, [view.marks.get(label) for label in group], keep)
        cluster.name = name if group is named else None
        view.clusters[group[0]] = cluster
        change.parents.update((label, group[0]) for label in group)
        change.clusters[group[0]] = cluster.summary(group[0])
        parts.append((group[0], tuple(view.ids[label] for label in group)))
    return tuple(parts)
