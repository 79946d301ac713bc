"""Faces into the engine, and the pipeline's observations into the faces-topic contract.

One path from a face to its cluster: `apply_face` takes an observation of the pipeline (`facestream run`, the
benchmarks: no record is built for a face that crosses no topic) or a faces-topic record (the cluster
worker) alike, so a face is clustered the same way whether it crossed Kafka or not; `TrackedFaces` gives a
face that was not embedded its track's cluster, as the cluster stage's appearances do.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from clustering.engine import OnlineRankOrder
from clustering.events import FaceAssignment
from clustering.redis_state.redis_records import Sighting
from models.frames import FaceObservation
from models.track_log import TrackSummary
from streaming.messages import AppearanceEvent, FaceQuality, FaceRecord, TrackRecord


def thumbnail(crop: NDArray[np.uint8], quality: int) -> str:
    """A face's aligned crop as base64 WebP (the faces-topic record's ``thumbnail``): at quality 45 about 0.9 KB,
    where JPEG takes 2.6 KB at 75 and 2.0 KB at 50 for a face that looks no better; the cluster stage keeps
    these pictures in Redis, within its bytes-per-face budget (README, "Faces in the service")."""
    done, encoded = cv2.imencode(".webp", crop, [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not done:
        raise ValueError(f"OpenCV could not encode a {crop.shape} face as WebP")
    return base64.b64encode(encoded.tobytes()).decode("ascii")


def bounded_score(score: float) -> float:
    """A detector's score as the faces-topic contract bounds it (0 to 1), and so as the engine weighs it."""
    return min(max(score, 0.0), 1.0)


def face_record(
    face: FaceObservation, *, space: str, model: str, dimension: int, thumbnail_quality: int = 0
) -> FaceRecord:
    """The faces-topic record of an observation: its embedding, and its aligned face as a WebP of
    ``thumbnail_quality`` (0: none), where it has them."""
    quality = face.quality
    crop = face.crop if face.embedding is not None and thumbnail_quality else None
    return FaceRecord(
        face_id=face.face_id,
        track=face.track,
        cooccurring=list(face.cooccurring),
        space=space,
        camera=face.camera,
        frame=face.frame,
        timestamp=face.timestamp,
        box=(float(face.box[0]), float(face.box[1]), float(face.box[2]), float(face.box[3])),
        landmarks=[(float(x), float(y)) for x, y in face.landmarks],
        score=bounded_score(face.score),
        quality=FaceQuality(
            face_size=quality.face_size
            if quality
            else float(min(face.box[2] - face.box[0], face.box[3] - face.box[1])),
            sharpness=quality.sharpness if quality else 0.0,
            yaw=quality.yaw if quality else 0.0,
        ),
        model=model,
        embedding=None if face.embedding is None else FaceRecord.encode_embedding(face.embedding),
        dimension=dimension,
        thumbnail=None if crop is None else thumbnail(crop, thumbnail_quality),
    )


def track_record(summary: TrackSummary, *, space: str) -> TrackRecord:
    return TrackRecord(
        space=space,
        camera=summary.camera,
        track=summary.track,
        sequence=summary.sequence,
        first_frame=summary.first_frame,
        last_frame=summary.last_frame,
        first_timestamp=summary.first_timestamp,
        last_timestamp=summary.last_timestamp,
        faces=summary.faces,
        embedded=summary.embedded,
        best_face=summary.best_face,
        best_box=summary.best_box,
        best_quality=summary.best_quality,
        ended=summary.ended,
    )


class ClusterableFace(Protocol):
    """What the engine needs of a face: an observation of the pipeline and a faces-topic record both have it."""

    @property
    def face_id(self) -> str: ...
    @property
    def camera(self) -> str: ...
    @property
    def frame(self) -> int: ...
    @property
    def timestamp(self) -> float: ...
    @property
    def score(self) -> float: ...
    @property
    def track(self) -> str | None: ...
    @property
    def cooccurring(self) -> Sequence[str]: ...


def apply_face(
    engine: OnlineRankOrder,
    face: ClusterableFace,
    vector: NDArray[np.float32],
    offset: tuple[int, int] | None = None,
    thumbnail: Callable[[], bytes | None] | None = None,
) -> FaceAssignment:
    """Clusters an embedded face: its frame and co-occurring tracks are cannot-links, its track a must-link.
    ``thumbnail``: its picture, asked for only when the face is shown (engine.add)."""
    return engine.add(
        face.face_id,
        vector,
        camera=face.camera,
        frame=face.frame,
        timestamp=face.timestamp,
        quality=bounded_score(face.score),
        offset=offset,
        track=face.track,
        cooccurring=face.cooccurring,
        thumbnail=thumbnail,
    )


@dataclass
class TrackedFaces:
    """The clusters of an in-process pipeline's faces (`facestream run`, the benchmarks): an embedded face is
    clustered, and the track's latest embedded face (its anchor) stands for the track's other faces."""

    engine: OnlineRankOrder
    #: Track -> its latest embedded face.
    anchors: dict[str, str] = field(default_factory=dict)

    def place(self, face: FaceObservation) -> tuple[str | None, FaceAssignment | None]:
        """The face's anchor (itself when embedded; None for a track with no face clustered yet), and its
        assignment when it was embedded and clustered now."""
        if face.embedding is None:
            return (self.anchors.get(face.track) if face.track else None), None
        assignment = apply_face(self.engine, face, face.embedding)
        if face.track:
            self.anchors[face.track] = face.face_id
        return face.face_id, assignment


def appearance_event(engine: OnlineRankOrder, record: TrackRecord) -> AppearanceEvent | None:
    """The appearance of a track, attributed to its cluster; None when no face of the track was clustered."""
    cluster = engine.track_cluster(record.track)
    if cluster is None or record.best_face is None:
        return None
    return AppearanceEvent(
        space=record.space,
        cluster=cluster,
        camera=record.camera,
        track=record.track,
        sequence=record.sequence,
        first_timestamp=record.first_timestamp,
        last_timestamp=record.last_timestamp,
        faces=record.faces,
        best_face=record.best_face,
        best_box=record.best_box,
        best_quality=record.best_quality,
        ended=record.ended,
    )


def sighting_of(event: AppearanceEvent) -> Sighting:
    """An appearance as its identity's timeline keeps it."""
    return Sighting(
        track=event.track,
        sequence=event.sequence,
        camera=event.camera,
        first_seen=event.first_timestamp,
        last_seen=event.last_timestamp,
        faces=event.faces,
        ended=event.ended,
        best_face=event.best_face,
    )
