"""Face records: from the pipeline's observations to the faces-topic contract, and from records into the engine.

`facestream run`, the embed worker and the cluster worker all go through these functions, so a face is
described, keyed and clustered the same way whether it crossed Kafka or not.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from clustering.engine import OnlineRankOrder
from clustering.events import FaceAssignment
from models.frames import FaceObservation
from models.track_log import TrackSummary
from streaming.messages import AppearanceEvent, FaceQuality, FaceRecord, TrackRecord


def face_record(face: FaceObservation, *, space: str, model: str, dimension: int) -> FaceRecord:
    """The faces-topic record of an observation (its embedding, where it has one)."""
    quality = face.quality
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
        score=min(max(face.score, 0.0), 1.0),
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


def apply_face(
    engine: OnlineRankOrder,
    record: FaceRecord,
    vector: NDArray[np.float32],
    offset: tuple[int, int] | None = None,
) -> FaceAssignment:
    """Clusters an embedded face: its frame and co-occurring tracks are cannot-links, its track a must-link."""
    return engine.add(
        record.face_id,
        vector,
        camera=record.camera,
        frame=record.frame,
        timestamp=record.timestamp,
        quality=record.score,
        offset=offset,
        track=record.track,
        cooccurring=record.cooccurring,
    )


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
