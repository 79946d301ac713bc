"""`forget`: erasure that erases. The faces' embeddings leave the index (marked deleted, and zero in the next
snapshot), their metadata, embedding, neighbour list, marks and every link to them leave the state (and
Redis), their ids leave the neighbour lists of the faces that listed them, and the clusters they were in are
regrouped from the faces that remain (like a split). Their labels stay taken, as holes, so no other face's
label changes. The outcome names the faces, so consumers of the identities topic can delete them too.

A forget of many faces is applied in steps of at most a bounded number of faces (``erasure_steps``), each its
own atomic write, so one command never holds the store for long. The steps are planned from what the
selection holds when the command is read: faces by label, oldest first (the clusters they leave regrouped at
each step), and a cluster's faces newest first with the rest kept together under the cluster's id (its oldest
face), which goes with the last step. Either way, a worker restarted between two steps reads the command again,
selects exactly the faces the earlier steps left, and plans the same remaining steps.
"""

from __future__ import annotations

from array import array

from clustering.clusters import components, members_of
from clustering.correction_state import (
    Change,
    CorrectionError,
    CorrectionReason,
    CorrectionView,
    ForgetFaces,
    cluster_root,
    regroup,
)
from clustering.events import Forgotten


def forget(view: CorrectionView, command: ForgetFaces, *, keep: int, change: Change) -> Forgotten:
    gone = _selected(view, command)
    roots = sorted({view.sets.find(label) for label in gone})
    for label in gone:
        _leave_neighbour_lists(view, label, gone, change)
    change.links.update(view.links.drop(gone))
    parts: list[tuple[int, tuple[str, ...]]] = []
    removed: list[int] = []
    for root in roots:
        members = members_of(view.sets, root)
        remaining = [label for label in members if label not in gone]
        cluster = view.clusters.pop(root)
        change.clusters[root] = None
        if not remaining:
            removed.append(root)
            continue
        if command.keep_together:
            together = sorted(remaining)
            regroup(view, [together], (together, cluster.name), keep=keep, change=change)
            continue  # the cluster keeps its id and name; the last step removes it
        groups = components(remaining, view.links.within(remaining))
        named = max(groups, key=lambda group: (len(group), -group[0]))
        parts += regroup(view, groups, (named, cluster.name), keep=keep, change=change)
    faces = []
    for label in sorted(gone):
        faces.append(view.ids[label])
        change.forgotten[label] = view.ids[label]
        view.sets.regroup([label])
        change.parents[label] = label
        if view.marks.pop(label, None) is not None:
            change.marked.add(label)
        del view.label_of[view.ids[label]]
        view.ids[label] = ""
    return Forgotten(command.command_id, tuple(faces), tuple(parts), tuple(removed))


def erasure_steps(view: CorrectionView, command: ForgetFaces, step_faces: int) -> list[ForgetFaces]:
    """``command`` as forgets that each write about ``step_faces`` faces at most (those erased and those
    regrouped), the last under the command's own id (the others' ids are ``<id>@<first label>``). Raises
    CorrectionError, as ``forget`` does, for a bad selection. Each step names its faces, so a camera's or a
    time's faces are selected (a scan of the store) once, here."""
    gone = _selected(view, command)
    if not gone:
        return [command]  # nothing to erase: an empty forgotten event, as before steps
    if command.cluster is not None:
        order = sorted(gone, reverse=True)  # the cluster's oldest face, its id, goes last
        steps = [order[start : start + step_faces] for start in range(0, len(order), step_faces)]
    else:
        steps = _by_cluster(view, gone, step_faces)
    return [
        ForgetFaces(
            command.command_id if step is steps[-1] else f"{command.command_id}@{step[0]}",
            faces=tuple(view.ids[label] for label in step),
            keep_together=command.cluster is not None,
        )
        for step in steps
    ]


def _by_cluster(view: CorrectionView, gone: set[int], step_faces: int) -> list[list[int]]:
    """The faces in steps of whole clusters, oldest cluster first: each cluster they leave is regrouped once,
    and a step holds clusters of ``step_faces`` faces in all, or one cluster's (a cluster with more faces to
    erase than that is erased over several steps)."""
    by_root: dict[int, list[int]] = {}
    for label in sorted(gone):
        by_root.setdefault(view.sets.find(label), []).append(label)
    steps: list[list[int]] = []
    step: list[int] = []
    weight = 0
    for root in sorted(by_root):
        labels, size = by_root[root], view.clusters[root].size
        if step and weight + size > step_faces:
            steps.append(step)
            step, weight = [], 0
        pieces = [labels[start : start + step_faces] for start in range(0, len(labels), step_faces)]
        steps += pieces[:-1]
        step += pieces[-1]
        weight += size
    return [*steps, step] if step else steps


def _selected(view: CorrectionView, command: ForgetFaces) -> set[int]:
    selections = (command.cluster, command.camera, command.before, command.stored_before)
    if bool(command.faces) + sum(selection is not None for selection in selections) != 1:
        raise CorrectionError(
            CorrectionReason.BAD_SELECTION, command.command_id, "forget names faces, a cluster, a camera or a time"
        )
    if command.faces:
        labels = {view.label_of[face] for face in command.faces if face in view.label_of}
        if not labels:
            raise CorrectionError(CorrectionReason.UNKNOWN_FACE, command.command_id, "none of the faces is known")
        return labels
    if command.cluster is not None:
        return set(members_of(view.sets, cluster_root(view, command.cluster, command.command_id)))
    selected = view.select(command.camera, command.before, command.stored_before)
    return {label for label in selected if view.ids[label]}


def _leave_neighbour_lists(view: CorrectionView, label: int, gone: set[int], change: Change) -> None:
    """Takes ``label`` out of the lists of the faces it listed (where nearly all lists naming it are; the
    engine skips a stale entry anywhere else), and empties its own."""
    for other in view.lists[label]:
        if other in gone or label not in view.lists[other]:
            continue
        members, sims = view.lists[other], view.sims[other]
        keep = [i for i, member in enumerate(members) if member != label]
        view.lists[other] = array("i", [members[i] for i in keep])
        view.sims[other] = array("f", [sims[i] for i in keep])
        change.neighbours[other] = (tuple(view.lists[other]), tuple(view.sims[other]))
    view.lists[label] = array("i")
    view.sims[label] = array("f")
    change.neighbours[label] = ((), ())
