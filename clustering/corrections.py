"""A user's corrections of the clustering, and the constraints that keep them true as faces keep coming.

- ``merge``: the clusters become one, through a must-link no later face can undo.
- ``split``: the faces leave their cluster as a cluster of their own; ``reject`` ("not this person"): one
  face does. Both sides are marked (a cannot-link between every face of one side and every face of the
  other): no later face, merge or replay joins clusters holding faces of both sides again. The cut cluster's
  faces are regrouped into the connected components of the links that joined them, without the links across
  the cut (a face joined only through a face that left goes with it, or stands alone).
- ``label``: names a cluster (or clears its name). Clusters with two different names never join, so names
  survive merges, restarts and recoveries; a merge of two differently named clusters is a ``Conflict``.

A command that names what is not there raises ``CorrectionError`` (a dead letter) and changes nothing. One
that contradicts an earlier correction changes nothing and is reported as a ``Conflict``. Cluster ids are
the label of the cluster's oldest face; a command may name any cluster id it was told of, even one merged
away since: it means the cluster that face is in now.
"""

from __future__ import annotations

import unicodedata

from clustering.clusters import components, members_of
from clustering.correction_state import (
    MAX_NAME_LENGTH,
    Change,
    Correction,
    CorrectionError,
    CorrectionReason,
    CorrectionView,
    ForgetFaces,
    LabelCluster,
    MergeClusters,
    RejectFace,
    SplitFaces,
    cluster_root,
    regroup,
)
from clustering.erasure import forget
from clustering.events import Conflict, CorrectionOutcome, Labelled, Merged, Split, outcome_json
from clustering.packed import Link
from clustering.rank_order import MUST_LINK
from clustering.store import CorrectionDelta

#: The vocabulary, from clustering/correction_state.py, for whoever applies corrections.
__all__ = [
    "MAX_NAME_LENGTH",
    "Correction",
    "CorrectionError",
    "CorrectionReason",
    "CorrectionView",
    "ForgetFaces",
    "LabelCluster",
    "MergeClusters",
    "RejectFace",
    "SplitFaces",
    "apply_correction",
    "check_name",
]


def check_name(name: str | None, command_id: str) -> None:
    """A name is 1 to 200 printable characters (no control characters: they would forge log lines)."""
    if name is None:
        return
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise CorrectionError(
            CorrectionReason.BAD_NAME, command_id, f"a name has 1 to {MAX_NAME_LENGTH} characters, not {len(name)}"
        )
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise CorrectionError(CorrectionReason.BAD_NAME, command_id, "a name may not hold control characters")


def apply_correction(
    view: CorrectionView, correction: Correction, keep: int, offset: tuple[int, int] | None
) -> tuple[CorrectionOutcome, CorrectionDelta]:
    """Applies ``correction`` to ``view`` and returns its outcome and the delta for the store; ``keep``: the
    representatives a cluster keeps."""
    change = Change()
    if isinstance(correction, MergeClusters):
        outcome: CorrectionOutcome = _merge(view, correction, keep, change)
    elif isinstance(correction, SplitFaces):
        labels = [_face(view, face, correction.command_id) for face in correction.faces]
        roots = {view.sets.find(label) for label in labels}
        if len(roots) != 1:
            raise CorrectionError(
                CorrectionReason.FACES_IN_SEVERAL_CLUSTERS,
                correction.command_id,
                f"the faces to split off are in {len(roots)} clusters, not one",
            )
        outcome = _split(view, correction.command_id, roots.pop(), set(labels), keep=keep, change=change)
    elif isinstance(correction, RejectFace):
        label, root = _face(view, correction.face, correction.command_id), _cluster(view, correction)
        if view.sets.find(label) != root:
            raise CorrectionError(
                CorrectionReason.NOT_IN_CLUSTER,
                correction.command_id,
                f"face {correction.face} is not in cluster {correction.cluster}",
            )
        outcome = _split(view, correction.command_id, root, {label}, keep=keep, change=change)
    elif isinstance(correction, ForgetFaces):
        outcome = forget(view, correction, keep=keep, change=change)
    else:
        check_name(correction.name, correction.command_id)
        root = _cluster(view, correction)
        view.clusters[root].name = correction.name
        change.clusters[root] = view.clusters[root].summary(root)
        outcome = Labelled(correction.command_id, root, correction.name)
    delta = CorrectionDelta(
        correction.command_id,
        change.parents,
        change.clusters,
        {label: view.marks.get(label, {}) for label in change.marked},
        change.links,
        outcome_json(outcome),
        offset,
        change.forgotten,
        change.neighbours,
    )
    return outcome, delta


def _face(view: CorrectionView, face_id: str, command_id: str) -> int:
    label = view.label_of.get(face_id)
    if label is None:
        raise CorrectionError(CorrectionReason.UNKNOWN_FACE, command_id, f"no face {face_id} in this space")
    return label


def _cluster(view: CorrectionView, correction: RejectFace | LabelCluster) -> int:
    return cluster_root(view, correction.cluster, correction.command_id)


def _merge(view: CorrectionView, merge: MergeClusters, keep: int, change: Change) -> CorrectionOutcome:
    roots = sorted({cluster_root(view, cluster, merge.command_id) for cluster in merge.clusters})
    if len(roots) < 2:
        raise CorrectionError(CorrectionReason.NOTHING_TO_MERGE, merge.command_id, "the clusters named are one")
    clusters = [view.clusters[root] for root in roots]
    names = {c.name for c in clusters if c.name is not None}
    if len(names) > 1:
        return Conflict(merge.command_id, f"the clusters have different names: {sorted(names)}")
    for i, first in enumerate(clusters):
        for second in clusters[i + 1 :]:
            if first.conflicts(second):
                return Conflict(
                    merge.command_id,
                    "the clusters hold faces known to be different people (an earlier split or reject, or one frame)",
                )
    survivor = roots[0]
    links: list[Link] = []
    for absorbed in roots[1:]:
        view.sets.union(survivor, absorbed)
        view.clusters[survivor].absorb(view.clusters.pop(absorbed), keep)
        change.parents[absorbed] = survivor
        change.clusters[absorbed] = None
        links.append((survivor, absorbed, MUST_LINK))
    field = f"c:{merge.command_id}"
    view.links.add(links, field)
    change.links[field] = tuple(links)
    change.clusters[survivor] = view.clusters[survivor].summary(survivor)
    return Merged(merge.command_id, survivor, tuple(roots[1:]))


def _split(
    view: CorrectionView, command_id: str, root: int, leaving: set[int], *, keep: int, change: Change
) -> CorrectionOutcome:
    members = members_of(view.sets, root)
    if len(leaving) >= len(members):
        raise CorrectionError(
            CorrectionReason.SPLIT_OF_ALL, command_id, f"all {len(members)} faces of cluster {root} would leave it"
        )
    for label in members:
        view.marks.setdefault(label, {})[command_id] = "a" if label in leaving else "b"
    change.marked.update(members)
    kept_links = [link for link in view.links.within(members) if (link[0] in leaving) == (link[1] in leaving)]
    groups = components(members, kept_links)
    name = view.clusters.pop(root).name
    # The name stays with the part holding most of the faces that stayed.
    named = max(groups, key=lambda group: (sum(label not in leaving for label in group), -group[0]))
    return Split(command_id, root, regroup(view, groups, (named, name), keep=keep, change=change))
