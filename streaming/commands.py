"""The commands topic's contract (corrections of the clustering, keyed by identity space), and the events the
cluster stage publishes when it applied one (docs/messages.md, "commands" and "identities").

A command is JSON with ``type`` (merge, split, reject, label), ``version`` 1, a ``command_id`` (unique: a
command seen again changes nothing and publishes nothing again) and its ``space``. Parsing raises
``MessageError`` (reasons: empty, malformed, unknown_version, unknown_command); what a command names is
checked when it is applied (clustering/corrections.py: unknown_cluster, unknown_face, ...).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal, Self

from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, model_validator

from streaming.messages import (
    FaceRecord,
    MessageError,
    SpaceName,
    TrackRecord,
    _invalid,
    _Message,
    parse_faces_topic,
)

#: Ids are echoed in events and logs: a safe alphabet, bounded.
COMMAND_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
COMMAND_TYPES = ("merge", "split", "reject", "label", "forget")
#: A bound on a label's field: the name's own rule (1 to 200 printable characters) is checked when applied.
NAME_FIELD_MAX_LENGTH = 2000


class _Command(_Message):
    version: Literal[1] = 1
    command_id: str = Field(pattern=COMMAND_ID_PATTERN, description="Unique id: a command seen again is ignored")
    space: SpaceName


class MergeCommand(_Command):
    """The clusters are one person: they become one (the oldest keeps its id), and stay one."""

    type: Literal["merge"] = "merge"
    clusters: list[int] = Field(min_length=2, max_length=1000)


class SplitCommand(_Command):
    """These faces (all of one cluster, not all of it) are another person: they leave it as a new cluster."""

    type: Literal["split"] = "split"
    faces: list[str] = Field(min_length=1, max_length=100_000)


class RejectCommand(_Command):
    """This face is not the person of this cluster: it leaves it, and it and its near copies never return."""

    type: Literal["reject"] = "reject"
    face: str
    cluster: int


class LabelCommand(_Command):
    """Names a cluster (null clears the name). Checked when applied: 1 to 200 characters, none a control one."""

    type: Literal["label"] = "label"
    cluster: int
    name: str | None = Field(max_length=NAME_FIELD_MAX_LENGTH)


#: How far ahead of this worker's clock a forget's cut-off may be: the clocks of the sender and the worker differ.
FUTURE_SLACK_S = 300.0


class ForgetCommand(_Command):
    """Erases faces (their embeddings, metadata and every trace in the state): the ``faces`` given, a
    ``cluster``'s, a ``camera``'s, or every face seen ``before`` a Unix time. Exactly one of them."""

    type: Literal["forget"] = "forget"
    faces: list[str] | None = Field(None, min_length=1, max_length=100_000)
    cluster: int | None = None
    camera: str | None = Field(None, min_length=1, max_length=200)
    before: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Unix time, not in the future: faces seen (captured) before it"
    )
    stored_before: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Unix time, not in the future: faces stored before it (retention)"
    )

    @model_validator(mode="after")
    def _one_selection(self) -> Self:
        selections = (self.faces, self.cluster, self.camera, self.before, self.stored_before)
        if sum(selection is not None for selection in selections) != 1:
            raise ValueError("forget names exactly one of faces, cluster, camera, before, stored_before")
        cut_off = self.before if self.before is not None else self.stored_before
        if cut_off is not None and cut_off > time.time() + FUTURE_SLACK_S:
            # A cut-off in the future ("before: 1e12") is every face, one unbounded erasure: name them instead.
            raise ValueError(f"forget's cut-off {cut_off:.0f} is in the future")
        return self


Command = MergeCommand | SplitCommand | RejectCommand | LabelCommand | ForgetCommand


def _command_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return str(kind)


_COMMANDS: TypeAdapter[Command] = TypeAdapter(
    Annotated[
        Annotated[MergeCommand, Tag("merge")]
        | Annotated[SplitCommand, Tag("split")]
        | Annotated[RejectCommand, Tag("reject")]
        | Annotated[LabelCommand, Tag("label")]
        | Annotated[ForgetCommand, Tag("forget")],
        Discriminator(_command_kind),
    ]
)


def parse_command(data: bytes | str | None) -> Command:
    if not data:
        raise MessageError("empty", "command has no value")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError("malformed", f"command is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise MessageError("malformed", "a command is a JSON object")
    if raw.get("type") not in COMMAND_TYPES:
        raise MessageError(
            "unknown_command", f"command type {str(raw.get('type'))[:40]!r} is not one of {COMMAND_TYPES}"
        )
    try:
        return _COMMANDS.validate_python(raw, strict=False)
    except ValidationError as exc:
        raise _invalid(f"{raw['type']} command", exc) from exc


def command_or_error(data: bytes | None, topic: str = "", erasures_topic: str = "") -> Command | MessageError:
    """The command, or why it is refused. With an ``erasures_topic``, forget commands are read from it alone
    and every other command from elsewhere: who may erase is then who may write that topic."""
    try:
        command = parse_command(data)
    except MessageError as exc:
        return exc
    if erasures_topic and isinstance(command, ForgetCommand) and topic != erasures_topic:
        return MessageError("erasure_not_allowed", f"forget commands are read from {erasures_topic} only")
    if erasures_topic and topic == erasures_topic and not isinstance(command, ForgetCommand):
        return MessageError("not_an_erasure", f"only forget commands are read from {erasures_topic}")
    return command


def parse_cluster_input(data: bytes | None) -> FaceRecord | TrackRecord | Command:
    """A faces-topic record: a face, a track's appearance, or a command the cluster stage forwarded there."""
    try:
        return parse_faces_topic(data)
    except MessageError:
        try:
            raw = json.loads(data or b"")
        except ValueError:
            raw = None
        if isinstance(raw, dict) and raw.get("type") in COMMAND_TYPES:
            return parse_command(data)
        raise


class MergedEvent(_Message):
    type: Literal["merged"] = "merged"
    version: Literal[1] = 1
    space: str
    command_id: str
    survivor: int
    absorbed: list[int]


class SplitPart(_Message):
    cluster: int
    faces: list[str]


class SplitEvent(_Message):
    type: Literal["split"] = "split"
    version: Literal[1] = 1
    space: str
    command_id: str
    cluster: int = Field(description="The cluster cut")
    parts: list[SplitPart] = Field(description="The clusters its faces are in now; one may keep its id")
    piece: int = Field(1, ge=1, description="This event's place among the pieces of one that did not fit a record")
    pieces: int = Field(1, ge=1, description="Pieces of this outcome, each about the faces it lists")


class LabelledEvent(_Message):
    type: Literal["labelled"] = "labelled"
    version: Literal[1] = 1
    space: str
    command_id: str
    cluster: int
    name: str | None


class ForgottenEvent(_Message):
    """A tombstone: these faces are erased here; delete them wherever you copied them."""

    type: Literal["forgotten"] = "forgotten"
    version: Literal[1] = 1
    space: str
    command_id: str
    faces: list[str]
    parts: list[SplitPart] = Field(description="The clusters the faces left, as they are now")
    removed: list[int] = Field(description="Clusters with no face left")
    piece: int = Field(1, ge=1, description="This event's place among the pieces of one that did not fit a record")
    pieces: int = Field(1, ge=1, description="Pieces of this outcome, each about the faces it lists")


class ConflictEvent(_Message):
    type: Literal["conflict"] = "conflict"
    version: Literal[1] = 1
    space: str
    command_id: str
    reason: str = Field(description="Why the command changed nothing")


IdentityEvent = MergedEvent | SplitEvent | LabelledEvent | ForgottenEvent | ConflictEvent
