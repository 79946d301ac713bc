"""What an engine holds of its faces besides the index, empty or rebuilt from a stored state (the index is rebuilt
beside it: clustering/redis_state/compaction.py ``restored_index``)."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from clustering.clusters import Cluster, LinkLog
from clustering.store import Marks, StoredState
from clustering.union_find import UnionFind


@dataclass
class RestoredFaces:
    """An engine's faces: empty, or as a stored state left them."""

    #: Face id by label ("" for a forgotten face), and label by face id.
    ids: list[str] = field(default_factory=list)
    label_of: dict[str, int] = field(default_factory=dict)
    #: Neighbour lists by label, in compact arrays rather than lists of Python numbers (500 bytes less a face).
    lists: list[array[int]] = field(default_factory=list)
    sims: list[array[float]] = field(default_factory=list)
    sets: UnionFind = field(default_factory=UnionFind)
    clusters: dict[int, Cluster] = field(default_factory=dict)
    links: LinkLog = field(default_factory=LinkLog)
    #: Correction marks of the faces a correction named or cut (few): label -> marks.
    marks: dict[int, Marks] = field(default_factory=dict)
    commands: set[str] = field(default_factory=set)
    tombstones: set[str] = field(default_factory=set)
    #: Track -> label of its latest embedded face, the anchor of the track's next must-link.
    track_anchor: dict[str, int] = field(default_factory=dict)


def restored_faces(state: StoredState) -> RestoredFaces:
    """Everything of ``state`` but the index: ids, neighbour lists, union-find, clusters, constraints."""
    faces = RestoredFaces()
    for label, meta in enumerate(state.metas):
        faces.ids.append(meta.face_id)
        if meta.face_id:  # "": forgotten
            faces.label_of[meta.face_id] = label
        members, sims = state.neighbours.get(label, ((), ()))
        faces.lists.append(array("i", members))
        faces.sims.append(array("f", sims))
    faces.sets = UnionFind.from_parents(len(state.metas), state.parents)
    faces.clusters = {root: Cluster.of(summary) for root, summary in state.clusters.items()}
    for field_name, links in state.links.items():
        faces.links.add(links, field_name)
    faces.marks = state.marks
    faces.commands = set(state.commands)
    faces.tombstones = set(state.tombstones)
    for label, meta in enumerate(state.metas):
        if not meta.face_id:
            continue
        faces.clusters[faces.sets.find(label)].note(meta, state.marks.get(label))
        if meta.track:
            faces.track_anchor[meta.track] = label
    return faces
