"""The JSON Schema of every message contract, as written to docs/schemas/<stem>.json (docs/messages.md)."""

from __future__ import annotations

from typing import Any

from streaming.commands import (
    ConflictEvent,
    ForgetCommand,
    ForgottenEvent,
    LabelCommand,
    LabelledEvent,
    MergeCommand,
    MergedEvent,
    RejectCommand,
    SplitCommand,
    SplitEvent,
)
from streaming.frame_headers import FrameHeaders
from streaming.messages import (
    AppearanceEvent,
    Assignment,
    DeadLetter,
    FaceRecord,
    MergeEvent,
    TrackRecord,
    _Message,
)

#: Contracts whose JSON Schemas live in docs/schemas/, by file stem.
SCHEMAS: dict[str, type[_Message]] = {
    "frame-headers.v2": FrameHeaders,
    "face.v2": FaceRecord,
    "track.v2": TrackRecord,
    "assignment.v1": Assignment,
    "appearance.v1": AppearanceEvent,
    "merge.v1": MergeEvent,
    "dead-letter.v1": DeadLetter,
    "command-merge.v1": MergeCommand,
    "command-split.v1": SplitCommand,
    "command-reject.v1": RejectCommand,
    "command-label.v1": LabelCommand,
    "command-forget.v1": ForgetCommand,
    "merged.v1": MergedEvent,
    "split.v1": SplitEvent,
    "labelled.v1": LabelledEvent,
    "forgotten.v1": ForgottenEvent,
    "conflict.v1": ConflictEvent,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every contract, as written to docs/schemas/<stem>.json."""
    schemas = {}
    for stem, model in SCHEMAS.items():
        schema = model.model_json_schema()
        schema["$id"] = f"urn:facestream:schema:{stem}"
        schemas[stem] = schema
    return schemas
