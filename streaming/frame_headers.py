"""The frames topic's headers (camera, session, frame, timestamp, space), and the sessions a producer starts:
one per connection to a camera, so that ids of faces and tracks never repeat after a reconnect."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, model_validator

from streaming.messages import Header, MessageError, SpaceName, Timestamp, _Message

#: A producer's session: lower-case letters and digits, so that ``camera@session:frame:rank`` parses one way.
SESSION_PATTERN = r"^[0-9a-z]{1,32}$"
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_session(now: float | None = None) -> str:
    """A fresh session: the connection's start (milliseconds, base 36, so sessions sort by time) and four
    random characters (two producers starting the same camera in the same millisecond still differ)."""
    millis = int((time.time() if now is None else now) * 1000)
    digits = ""
    while millis:
        millis, rest = divmod(millis, 36)
        digits = _BASE36[rest] + digits
    return (digits or "0") + "".join(secrets.choice(_BASE36) for _ in range(4))


class FrameHeaders(_Message):
    """Headers of a frames-topic message; its key is the camera id and its value the JPEG.

    Version 2 adds ``session``: one per connection of the producer to the camera, so that frame numbers that
    start again from 0 after a reconnect or a restart never give ids of faces or tracks that were seen
    before. Version 1 records (no session) are still read: their ids are the camera's alone.
    """

    version: Literal[1, 2] = 2
    camera: str = Field(min_length=1, max_length=200)
    session: str | None = Field(
        None,
        pattern=SESSION_PATTERN,
        description="The producer's connection to the camera: new on every (re)connection. Absent in version 1.",
    )
    frame: int = Field(ge=0, description="Frame number in the session (in the camera's stream for version 1).")
    timestamp: Timestamp = Field(description="Capture time, Unix seconds (position in the file for recordings).")
    space: SpaceName = "default"

    @model_validator(mode="before")
    @classmethod
    def _version_from_session(cls, data: Any) -> Any:
        """Built in code without a version: version 2 with a session, 1 without."""
        if isinstance(data, dict) and "version" not in data:
            return {**data, "version": 1 if data.get("session") is None else 2}
        return data

    @model_validator(mode="after")
    def _session_by_version(self) -> Self:
        if (self.session is None) != (self.version == 1):
            raise ValueError("a version 2 frame names its session; a version 1 frame has none")
        return self

    def to_kafka(self) -> list[Header]:
        return [(name, str(value).encode()) for name, value in self.model_dump(exclude_none=True).items()]

    @classmethod
    def from_kafka(cls, headers: Sequence[Header] | dict[str, str | bytes | None] | None) -> FrameHeaders:
        fields: dict[str, str] = {}
        pairs = headers.items() if isinstance(headers, dict) else headers or ()
        for name, value in pairs:
            if name in fields:
                # Kafka allows a header twice; which one a reader takes is up to it, so neither is trusted.
                raise MessageError("malformed_header", f"header {name!r} appears more than once")
            try:
                fields[name] = value.decode() if isinstance(value, bytes) else str(value or "")
            except UnicodeDecodeError as exc:
                raise MessageError("malformed_header", f"header {name!r} is not UTF-8") from exc
        absent = {"version", "camera", "frame", "timestamp"} - fields.keys()
        if absent:
            raise MessageError("missing_header", f"frame message lacks header(s) {sorted(absent)}")
        if fields["version"] not in FRAME_VERSIONS:
            raise MessageError(
                "unknown_version", f"frame header version {fields['version']!r}; this build reads 1 and 2"
            )
        try:
            return cls.model_validate({**fields, "version": int(fields["version"])})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "session"
            raise MessageError("malformed_header", f"header {where}: {first['msg']}") from exc


FRAME_VERSIONS = frozenset({"1", "2"})
