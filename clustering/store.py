"""What the clustering engine persists, and the in-memory store.

The engine keeps a full replica of the state in its process and writes one delta per face. A delta is
applied atomically and at most once (by face id), together with the input offset it came from, so a
replayed message changes nothing and a restarted process resumes exactly where the store says.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from clustering.errors import ClusteringError
from clustering.events import Merge
from clustering.packed import Link, Neighbours, pack_neighbours, unpack_neighbours

#: Embeddings are stored as little-endian float16, and the engine rounds every face to it, so the index holds
#: exactly what a restart reads back: half the bytes, and LFW DevTrain's online BCubed F is unchanged to four
#: decimals (README, "State").
EMBEDDING_DTYPE = np.dtype("<f2")


class StoreError(ClusteringError, RuntimeError):
    """The state store refused or failed a write or a read."""


@dataclass(frozen=True, slots=True)
class FaceMeta:
    face_id: str
    camera: str = ""
    #: Faces sharing a frame key are different people (a cannot-link); None for no constraint.
    frame_key: str | None = None
    timestamp: float = 0.0
    quality: float = 1.0
    #: The face's track: its faces are one person (a must-link); None for a face on its own.
    track: str | None = None
    #: Tracks seen in the face's frame: other people (cannot-links).
    cooccurring: tuple[str, ...] = ()
    #: When the engine took it (Unix time; 0: before this was recorded): what retention counts from.
    stored_at: float = 0.0


#: What stands in for the metadata and the embedding of a forgotten face (its label stays taken; nothing of it
#: remains). Who builds an index puts a zero vector of its dimension there, marked deleted.
FORGOTTEN = FaceMeta("")
FORGOTTEN_VECTOR: NDArray[np.float32] = np.zeros(0, np.float32)


def stand_ins_filled(vectors: list[NDArray[np.float32]], dimension: int) -> NDArray[np.float32]:
    """``vectors`` stacked, each forgotten face's empty stand-in made a zero vector of ``dimension``."""
    if not vectors:
        return np.zeros((0, dimension), np.float32)
    return np.stack([v if v.size else np.zeros(dimension, np.float32) for v in vectors])


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    id: int
    size: int
    first_seen: float
    last_seen: float
    cameras: tuple[str, ...]
    #: (quality, face id), best first.
    representatives: tuple[tuple[float, str], ...]
    #: The person's name, given by a `label` correction.
    name: str | None = None


#: A face's correction marks: constraint id -> side ("a" or "b"); faces on two sides are different people.
Marks = dict[str, str]


@dataclass(frozen=True)
class FaceDelta:
    label: int
    meta: FaceMeta
    embedding: NDArray[np.float32]
    #: Neighbour lists that changed (the new face's own included).
    neighbours: dict[int, Neighbours]
    #: Union-find parents set by this face's merges: absorbed root -> surviving root.
    parents: dict[int, int]
    #: Cluster summaries that changed; None for a cluster absorbed into another.
    clusters: dict[int, ClusterSummary | None]
    #: (partition, offset) of the input message, recorded in the same atomic step.
    offset: tuple[int, int] | None = None
    #: The face's cluster and the merges it caused, for stores that keep an outbox of events to publish.
    cluster: int = -1
    merges: tuple[Merge, ...] = ()
    #: The links of this face's unions (a split recomputes clusters over them).
    links: tuple[Link, ...] = ()
    #: The face's picture, given only while it is one of its cluster's representatives: a store that keeps
    #: pictures keeps those of representatives alone, and drops one when its face stops being one.
    thumbnail: bytes | None = None


@dataclass(frozen=True)
class CorrectionDelta:
    """What a correction (clustering/corrections.py) changed, applied atomically and once by command id."""

    command_id: str
    #: The new parent of every face whose cluster changed (a root is its own parent).
    parents: dict[int, int]
    clusters: dict[int, ClusterSummary | None]
    #: The full marks of each face whose marks changed.
    marks: dict[int, Marks]
    #: Link fields written anew (a merge's ``c:<command id>``, or one a forget took links from); () deletes.
    links: dict[str, tuple[Link, ...]]
    #: The outcome event as JSON (the store keeps it with the command id, and in the outbox with an offset).
    outcome: str
    offset: tuple[int, int] | None = None
    #: Faces erased (label -> face id): every trace of them goes.
    forgotten: dict[int, str] = field(default_factory=dict)
    #: Neighbour lists written anew (a forgotten face taken out of them).
    neighbours: dict[int, Neighbours] = field(default_factory=dict)
    #: False for a step of an erasure other than its last (clustering/erasure.py): written at once, its outcome
    #: published, but the input offset is recorded with the last step only.
    final: bool = True


@dataclass
class StoredState:
    metas: list[FaceMeta] = field(default_factory=list)
    embeddings: list[NDArray[np.float32]] = field(default_factory=list)
    neighbours: dict[int, Neighbours] = field(default_factory=dict)
    parents: dict[int, int] = field(default_factory=dict)
    clusters: dict[int, ClusterSummary] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    snapshot: bytes | None = None
    snapshot_count: int = 0
    #: Link field -> its links (clustering/clusters.py, LinkLog).
    links: dict[str, list[Link]] = field(default_factory=dict)
    marks: dict[int, Marks] = field(default_factory=dict)
    #: Labels of forgotten faces: their meta and embedding are gone (FORGOTTEN and a zero vector stand in).
    forgotten: set[int] = field(default_factory=set)
    #: Ids of the corrections applied.
    commands: set[str] = field(default_factory=set)
    #: tombstone() of every forgotten face id: a replayed record of one is not applied again.
    tombstones: set[str] = field(default_factory=set)


def tombstone(face_id: str) -> str:
    """A forgotten face's id, one way (SHA-1 hex, as Redis's Lua computes it): enough to refuse a replay of
    the face, nothing to tell where or when it was."""
    return hashlib.sha1(face_id.encode(), usedforsecurity=False).hexdigest()


def selects(meta: FaceMeta, camera: str | None, before: float | None, stored_before: float | None = None) -> bool:
    """Whether a face is of ``camera``, seen before ``before``, and stored before ``stored_before`` (each if
    given; a face with no stored time is never selected by it)."""
    return (
        (camera is None or meta.camera == camera)
        and (before is None or meta.timestamp < before)
        and (stored_before is None or 0 < meta.stored_at < stored_before)
    )


class StateStore(Protocol):
    def apply(self, delta: FaceDelta) -> bool:
        """Applies a delta atomically; False (and no change) when its face was applied before."""
        ...

    def apply_correction(self, delta: CorrectionDelta) -> bool:
        """Applies a correction's delta atomically; False (and no change) when its command was applied before."""
        ...

    def metas(self, labels: list[int]) -> list[FaceMeta]:
        """The metadata of these faces."""
        ...

    def labels_where(self, camera: str | None, before: float | None, stored_before: float | None) -> list[int]:
        """The faces of ``camera``, seen before ``before`` or stored before ``stored_before`` (Unix times),
        forgotten ones left out."""
        ...

    def load(self) -> StoredState: ...


class InMemoryStore:
    """The state in this process: for `facestream run`, tests, and as the reference for other stores."""

    def __init__(self) -> None:
        self._state = StoredState()
        self._applied: set[str] = set()
        # Packed, like Redis holds them: a few hundred bytes less per face than tuples of Python numbers.
        self._neighbours: dict[int, bytes] = {}

    def apply(self, delta: FaceDelta) -> bool:
        if delta.meta.face_id in self._applied or tombstone(delta.meta.face_id) in self._state.tombstones:
            return False
        state = self._state
        if delta.label != len(state.metas):
            raise StoreError(f"face {delta.meta.face_id} has label {delta.label}; the store holds {len(state.metas)}")
        state.metas.append(delta.meta)
        state.embeddings.append(delta.embedding)
        self._neighbours.update((label, pack_neighbours(n)) for label, n in delta.neighbours.items())
        state.parents.update(delta.parents)
        for root, summary in delta.clusters.items():
            if summary is None:
                state.clusters.pop(root, None)
            else:
                state.clusters[root] = summary
        if delta.offset is not None:
            state.offsets[delta.offset[0]] = delta.offset[1]
        if delta.links:
            state.links[str(delta.label)] = list(delta.links)
        self._applied.add(delta.meta.face_id)
        return True

    def apply_correction(self, delta: CorrectionDelta) -> bool:
        state = self._state
        if delta.command_id in state.commands:
            return False
        for label, parent in delta.parents.items():
            if label == parent:
                state.parents.pop(label, None)  # a root is stored as no parent, as Redis does
            else:
                state.parents[label] = parent
        for root, summary in delta.clusters.items():
            if summary is None:
                state.clusters.pop(root, None)
            else:
                state.clusters[root] = summary
        for label, marks in delta.marks.items():
            if marks:
                state.marks[label] = marks
            else:
                state.marks.pop(label, None)
        for name, links in delta.links.items():
            if links:
                state.links[name] = list(links)
            else:
                state.links.pop(name, None)
        self._neighbours.update((label, pack_neighbours(n)) for label, n in delta.neighbours.items())
        for label, face_id in delta.forgotten.items():
            state.metas[label] = FORGOTTEN
            state.embeddings[label] = FORGOTTEN_VECTOR
            self._neighbours.pop(label, None)
            self._applied.discard(face_id)
            state.forgotten.add(label)
            state.tombstones.add(tombstone(face_id))
        if delta.offset is not None and delta.final:
            state.offsets[delta.offset[0]] = delta.offset[1]
        state.commands.add(delta.command_id)
        return True

    def metas(self, labels: list[int]) -> list[FaceMeta]:
        return [self._state.metas[label] for label in labels]

    def labels_where(self, camera: str | None, before: float | None, stored_before: float | None) -> list[int]:
        metas = enumerate(self._state.metas)
        return [label for label, meta in metas if meta.face_id and selects(meta, camera, before, stored_before)]

    def load(self) -> StoredState:
        state = self._state
        return StoredState(
            list(state.metas),
            list(state.embeddings),
            {label: unpack_neighbours(data) for label, data in self._neighbours.items()},
            dict(state.parents),
            dict(state.clusters),
            dict(state.offsets),
            state.snapshot,
            state.snapshot_count,
            links={name: list(links) for name, links in state.links.items()},
            marks={label: dict(marks) for label, marks in state.marks.items()},
            forgotten=set(state.forgotten),
            commands=set(state.commands),
            tombstones=set(state.tombstones),
        )
