"""One valid example of every contract, for the message tests and the schemas."""

from __future__ import annotations

from typing import Any

import numpy as np

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
    SplitPart,
)
from streaming.frame_headers import FrameHeaders
from streaming.messages import (
    AppearanceEvent,
    Assignment,
    DeadLetter,
    FaceQuality,
    FaceRecord,
    MergeEvent,
    TrackRecord,
)


def example_face(**changes: Any) -> FaceRecord:
    vector = np.random.default_rng(0).normal(size=512).astype(np.float32)
    fields: dict[str, Any] = {
        "face_id": "lobby:42:0",
        "camera": "lobby",
        "frame": 42,
        "timestamp": 1700000000.25,
        "box": (10.0, 20.0, 110.0, 140.0),
        "landmarks": [(40.0, 60.0), (80.0, 60.0), (60.0, 80.0), (45.0, 100.0), (75.0, 100.0)],
        "score": 0.87,
        "quality": FaceQuality(face_size=100.0, sharpness=250.0, yaw=0.1),
        "model": "arcface-w600k-mbf",
        "embedding": FaceRecord.encode_embedding(vector / np.linalg.norm(vector)),
        "dimension": 512,
    }
    fields.update(changes)
    return FaceRecord(**fields)


EXAMPLES = {
    "frame-headers.v2": FrameHeaders(
        camera="lobby", session="mi8z3k2pa7xq", frame=42, timestamp=1700000000.25, space="hq"
    ),
    "face.v2": example_face(track="lobby:t40.0", cooccurring=["lobby:t12.1"]),
    "track.v2": TrackRecord(
        space="hq",
        camera="lobby",
        track="lobby:t40.0",
        sequence=0,
        first_frame=40,
        last_frame=97,
        first_timestamp=1700000000.1,
        last_timestamp=1700000002.4,
        faces=58,
        embedded=2,
        best_face="lobby:42:0",
        best_box=(10.0, 20.0, 110.0, 140.0),
        best_quality=0.81,
        ended=True,
    ),
    "appearance.v1": AppearanceEvent(
        space="hq",
        cluster=7,
        camera="lobby",
        track="lobby:t40.0",
        sequence=0,
        first_timestamp=1700000000.1,
        last_timestamp=1700000002.4,
        faces=58,
        best_face="lobby:42:0",
        best_box=(10.0, 20.0, 110.0, 140.0),
        best_quality=0.81,
        ended=True,
    ),
    "assignment.v1": Assignment(space="hq", face_id="lobby:42:0", cluster=7, camera="lobby", timestamp=1.5),
    "merge.v1": MergeEvent(space="hq", survivor=3, absorbed=[7, 9], face_id="lobby:42:0"),
    "dead-letter.v1": DeadLetter(
        stage="embed",
        reason="corrupt",
        error_class="ImageDecodeError",
        error_message="corrupt: image file is truncated",
        topic="frames",
        partition=1,
        offset=99,
        key=DeadLetter.b64(b"lobby"),
        value=DeadLetter.b64(b"\xff\xd8 truncated"),
        headers=[("camera", "bG9iYnk=")],
    ),
    "command-merge.v1": MergeCommand(command_id="c-1", space="hq", clusters=[3, 17]),
    "command-split.v1": SplitCommand(command_id="c-2", space="hq", faces=["lobby:42:0", "lobby:43:0"]),
    "command-reject.v1": RejectCommand(command_id="c-3", space="hq", face="lobby:42:0", cluster=3),
    "command-label.v1": LabelCommand(command_id="c-4", space="hq", cluster=3, name="Ada Lovelace"),
    "merged.v1": MergedEvent(space="hq", command_id="c-1", survivor=3, absorbed=[17]),
    "split.v1": SplitEvent(
        space="hq",
        command_id="c-2",
        cluster=3,
        parts=[SplitPart(cluster=3, faces=["lobby:1:0"]), SplitPart(cluster=42, faces=["lobby:42:0", "lobby:43:0"])],
    ),
    "labelled.v1": LabelledEvent(space="hq", command_id="c-4", cluster=3, name="Ada Lovelace"),
    "conflict.v1": ConflictEvent(space="hq", command_id="c-5", reason="the clusters have different names"),
    "command-forget.v1": ForgetCommand(command_id="c-6", space="hq", camera="lobby"),
    "forgotten.v1": ForgottenEvent(
        space="hq",
        command_id="c-6",
        faces=["lobby:42:0"],
        parts=[SplitPart(cluster=3, faces=["door:1:0"])],
        removed=[42],
    ),
}
