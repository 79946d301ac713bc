"""Versioned message contracts of the Kafka topics (docs/messages.md, JSON Schemas in docs/schemas/).

- frames: key = camera id, value = JPEG bytes, headers carry the rest (``FrameHeaders``,
  streaming/frame_headers.py);
- faces: one JSON ``FaceRecord`` per embedded face and a ``TrackRecord`` per appearance, key = camera (one
  partition keeps a camera's records in order, a track's faces before its appearance);
- identities: JSON ``Assignment``, ``MergeEvent`` and ``AppearanceEvent`` records, key = identity space (one
  partition keeps their order);
- dead letters: a JSON ``DeadLetter`` holding the original message and why it was refused.

Parsing raises ``MessageError`` with a short, low-cardinality ``reason`` for metrics and dead letters.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, model_validator

from streaming.embeddings import EmbeddingValueError, unit_embedding
from streaming.errors import StreamingError
from streaming.frozen import FrozenModel


class MessageError(StreamingError, ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class _Message(FrozenModel):
    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | None) -> Self:
        if not data:
            raise MessageError("empty", f"{cls.__name__} message has no value")
        try:
            message = cls.model_validate_json(data, strict=False)
        except ValidationError as exc:
            raise _invalid(cls.__name__, exc) from exc
        return message


def _invalid(what: str, exc: ValidationError) -> MessageError:
    """The MessageError of a record that failed validation: an unknown version, or malformed."""
    versions = [e for e in exc.errors() if e["loc"] and e["loc"][-1] == "version"]
    reason = "unknown_version" if versions else "malformed"
    return MessageError(reason, f"{what}: {exc.error_count()} error(s): {exc.errors()[0]['msg']}")


Header = tuple[str, str | bytes | None]


#: An identity space's name: it is part of Redis keys (`{fs:<space>}:...`, a hash tag), so no braces, colons or
#: white space. A record naming another is refused (a dead letter) before it reaches a stage's state.
SPACE_PATTERN = r"^[^{}:\s]{1,100}$"
SpaceName = Annotated[
    str, Field(pattern=SPACE_PATTERN, description="Identity space: no braces, colons or white space; 100 at most.")
]

#: Capture times: finite, not before 1970 and not after 2100 (a recording's are positions in the file, from 0).
#: NaN or infinity would poison every ordering by time downstream (Redis refuses them as scores).
MAX_TIMESTAMP = 4_102_444_800.0
#: A face's thumbnail is a small picture (the embed stage's are about 1.5 KB as base64): 64 KB bounds what a
#: producer can make the cluster stage keep in Redis for one face.
MAX_THUMBNAIL_BASE64 = 65_536
Timestamp = Annotated[float, Field(ge=0.0, le=MAX_TIMESTAMP, allow_inf_nan=False)]
#: Ids the producer or the embed stage write; bounded so that no record carries an unbounded one.
CameraId = Annotated[str, Field(min_length=1, max_length=200)]
RecordId = Annotated[str, Field(min_length=1, max_length=300)]

Point = tuple[float, float]


class FaceQuality(_Message):
    face_size: float
    sharpness: float
    yaw: float


class FaceRecord(_Message):
    """One face on the faces topic: embedded, or (version 2, when asked for) a tracked face without embedding."""

    type: Literal["face"] = "face"
    version: Literal[1, 2] = 2
    face_id: RecordId = Field(description="camera:frame:index (a detected face), camera:frame:c<index> (a tracked one)")
    track: RecordId | None = Field(None, description="Track id (camera:t<frame>.<n>); null with tracking off")
    cooccurring: list[RecordId] = Field(
        default_factory=list, max_length=1000, description="Other tracks with a face on this frame: different people"
    )
    space: SpaceName = "default"
    camera: CameraId
    frame: int = Field(ge=0)
    timestamp: Timestamp
    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in frame pixels")
    landmarks: Annotated[list[Point], Field(min_length=5, max_length=5)]
    score: float = Field(ge=0.0, le=1.0)
    quality: FaceQuality
    model: str = Field(max_length=200, description="Embedder id or file name")
    embedding: str | None = Field(
        description="Base64 of little-endian float32 values, unit length; null for a tracked face not embedded"
    )
    dimension: int = Field(ge=1, le=8192)
    thumbnail: str | None = Field(
        None, max_length=MAX_THUMBNAIL_BASE64, description="Base64 WebP or JPEG of the aligned 112x112 face"
    )

    @staticmethod
    def encode_embedding(vector: NDArray[np.float32]) -> str:
        return base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode()

    @model_validator(mode="after")
    def _version_fields(self) -> Self:
        if self.version == 1 and (self.embedding is None or self.track is not None):
            raise ValueError("a version 1 face record has an embedding and no track")
        return self

    def vector(self, expected_dimension: int | None = None) -> NDArray[np.float32]:
        """The embedding, checked against ``dimension`` (and the caller's expectation)."""
        if self.embedding is None:
            raise MessageError("bad_embedding", f"face {self.face_id} has no embedding")
        try:
            raw = base64.b64decode(self.embedding, validate=True)
        except binascii.Error as exc:
            raise MessageError("bad_embedding", f"face {self.face_id}: embedding is not base64") from exc
        values = np.frombuffer(raw, "<f4").astype(np.float32) if len(raw) % 4 == 0 else np.zeros(0, np.float32)
        wanted = expected_dimension or self.dimension
        if values.size != self.dimension or values.size != wanted:
            raise MessageError(
                "bad_embedding",
                f"face {self.face_id}: embedding has {len(raw)} bytes ({self.dimension} declared); "
                f"this worker expects {wanted} float32 values",
            )
        try:
            return unit_embedding(values)
        except EmbeddingValueError as exc:
            raise MessageError("bad_embedding", f"face {self.face_id}: embedding {exc}") from exc


class TrackRecord(_Message):
    """A track's appearance on the faces topic, after the track's faces (same key: the camera)."""

    type: Literal["track"] = "track"
    version: Literal[2] = 2
    space: SpaceName = "default"
    camera: CameraId
    track: RecordId
    sequence: int = Field(ge=0, description="0 for a track's first appearance; long tracks report periodically")
    first_frame: int = Field(ge=0)
    last_frame: int = Field(ge=0)
    first_timestamp: Timestamp
    last_timestamp: Timestamp
    faces: int = Field(ge=0, description="Faces of the track in this appearance")
    embedded: int = Field(ge=0, description="Of which embedded")
    best_face: RecordId | None = Field(description="Id of the embedded face of highest quality")
    best_box: tuple[float, float, float, float] | None
    best_quality: float = Field(ge=0.0)
    ended: bool = Field(description="False for a periodic report of a track still going")


def _faces_topic_kind(value: Any) -> str:
    kind = value.get("type", "face") if isinstance(value, dict) else getattr(value, "type", "face")
    return str(kind)


_FACES_TOPIC: TypeAdapter[FaceRecord | TrackRecord] = TypeAdapter(
    Annotated[
        Annotated[FaceRecord, Tag("face")] | Annotated[TrackRecord, Tag("track")],
        Discriminator(_faces_topic_kind),
    ]
)


def parse_faces_topic(data: bytes | None) -> FaceRecord | TrackRecord:
    """A faces-topic value: a face (version 1 has no type) or a track's appearance."""
    if not data:
        raise MessageError("empty", "faces-topic message has no value")
    try:
        return _FACES_TOPIC.validate_json(data, strict=False)
    except ValidationError as exc:
        raise _invalid("faces-topic record", exc) from exc


class Assignment(_Message):
    type: Literal["assignment"] = "assignment"
    version: Literal[1] = 1
    space: str
    face_id: str
    cluster: int
    camera: str
    timestamp: float


class MergeEvent(_Message):
    type: Literal["merge"] = "merge"
    version: Literal[1] = 1
    space: str
    survivor: int
    absorbed: list[int]
    face_id: str = Field(description="The face whose arrival caused the merge")


class AppearanceEvent(_Message):
    """One track of one camera, attributed to an identity: who, where, from when to when, its best face."""

    type: Literal["appearance"] = "appearance"
    version: Literal[1] = 1
    space: str
    cluster: int
    camera: str
    track: str
    sequence: int = Field(ge=0)
    first_timestamp: float
    last_timestamp: float
    faces: int = Field(ge=0)
    best_face: str
    best_box: tuple[float, float, float, float] | None
    best_quality: float = Field(ge=0.0)
    ended: bool


class DeadLetter(_Message):
    version: Literal[1] = 1
    stage: Literal["embed", "cluster"]
    reason: str = Field(description="Low-cardinality reason, also a metric label")
    error_class: str
    error_message: str
    topic: str
    partition: int
    offset: int
    key: str | None = Field(None, description="Base64 of the original key")
    value: str | None = Field(
        None, description="Base64 of the original value, or of its first bytes when value_truncated"
    )
    headers: list[tuple[str, str]] = Field(
        default_factory=list, description="Original headers, values base64 (each at most 1 KiB of it, 32 at most)"
    )
    value_bytes: int | None = Field(None, ge=0, description="Size of the whole original value")
    value_sha256: str | None = Field(None, description="Hex sha256 of the whole original value")
    value_truncated: bool = Field(
        False, description="Only a prefix of the value is kept: the whole would not fit the topic's record limit"
    )

    @staticmethod
    def b64(data: bytes | None) -> str | None:
        return None if data is None else base64.b64encode(data).decode()
