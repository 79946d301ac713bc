"""Where a command of the contract (streaming/commands.py) becomes the engine's correction
(clustering/corrections.py), and the engine's outcome becomes the identities topic's event: the one place
that knows both forms, so that neither room imports the other."""

from __future__ import annotations

from clustering.corrections import Correction, ForgetFaces, LabelCluster, MergeClusters, RejectFace, SplitFaces
from clustering.events import Conflict, CorrectionOutcome, Forgotten, Labelled, Merged, Split
from streaming.commands import (
    Command,
    ConflictEvent,
    ForgetCommand,
    ForgottenEvent,
    IdentityEvent,
    LabelCommand,
    LabelledEvent,
    MergeCommand,
    MergedEvent,
    RejectCommand,
    SplitCommand,
    SplitEvent,
    SplitPart,
)


def correction_of(command: Command) -> Correction:
    """The engine's correction a command asks for."""
    match command:
        case MergeCommand():
            return MergeClusters(command.command_id, tuple(command.clusters))
        case SplitCommand():
            return SplitFaces(command.command_id, tuple(command.faces))
        case RejectCommand():
            return RejectFace(command.command_id, command.face, command.cluster)
        case LabelCommand():
            return LabelCluster(command.command_id, command.cluster, command.name)
        case ForgetCommand():
            return ForgetFaces(
                command.command_id,
                tuple(command.faces or ()),
                command.cluster,
                command.camera,
                command.before,
                command.stored_before,
            )


def outcome_event(space: str, outcome: CorrectionOutcome) -> IdentityEvent:
    """The identities-topic event of an applied correction."""
    match outcome:
        case Merged():
            return MergedEvent(
                space=space, command_id=outcome.command_id, survivor=outcome.survivor, absorbed=list(outcome.absorbed)
            )
        case Split():
            parts = [SplitPart(cluster=cluster, faces=list(faces)) for cluster, faces in outcome.parts]
            return SplitEvent(space=space, command_id=outcome.command_id, cluster=outcome.cluster, parts=parts)
        case Forgotten():
            return ForgottenEvent(
                space=space,
                command_id=outcome.command_id,
                faces=list(outcome.faces),
                parts=[SplitPart(cluster=cluster, faces=list(faces)) for cluster, faces in outcome.parts],
                removed=list(outcome.removed),
            )
        case Labelled():
            return LabelledEvent(space=space, command_id=outcome.command_id, cluster=outcome.cluster, name=outcome.name)
        case Conflict():
            return ConflictEvent(space=space, command_id=outcome.command_id, reason=outcome.reason)
