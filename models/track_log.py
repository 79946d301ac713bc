"""What a track has been, for its appearance: span, face count, embeddings, best face; and when to embed it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from models.quality import QualityReport
from models.settings import TrackingSettings


@dataclass(frozen=True)
class TrackSummary:
    """One appearance: a track, or a stretch of a long one, with its best embedded face."""

    camera: str
    track: str
    sequence: int  # 0 for a track's first appearance; long tracks report every appearance_max_s
    first_frame: int
    last_frame: int
    first_timestamp: float
    last_timestamp: float
    faces: int
    embedded: int
    best_face: str | None  # the embedded face of highest quality; None when no face passed the gate
    best_box: tuple[float, float, float, float] | None
    best_quality: float
    ended: bool


def face_quality(report: QualityReport) -> float:
    """One number to compare faces of a track: confident, large and frontal is better."""
    return rank_of_face(report.score, report.face_size, report.yaw)


def rank_of_face(score: float, face_size: float, yaw: float) -> float:
    """face_quality from a face's numbers (as a faces-topic record carries them)."""
    return float(score * min(1.0, face_size / 112.0) / (1.0 + yaw))


@dataclass
class TrackLog:
    camera: str
    track: str
    first_frame: int
    first_timestamp: float
    last_frame: int = 0
    last_timestamp: float = 0.0
    faces: int = 0
    embedded: int = 0
    sequence: int = 0
    last_embed_timestamp: float | None = None
    last_embed_quality: float = 0.0
    best_quality: float = -1.0
    best_face: str | None = None
    best_box: tuple[float, float, float, float] | None = None
    #: Position (a Kafka offset) of the appearance's first frame, where the input has positions.
    first_position: int | None = None
    #: Faces of the track embedded in its earlier appearances (a long track's stretches).
    earlier_embeddings: int = 0
    #: The quality-weighted sum of the track's embeddings (its template, before normalising).
    embeddings_sum: NDArray[np.float32] | None = None

    def template_with(self, embedding: NDArray[np.float32], quality: float) -> NDArray[np.float32]:
        """The track's template once this embedded face is counted: the quality-weighted mean of its
        embeddings, at unit length. A track is one person; the mean of its faces is a steadier sample of them
        than any one face (set-based recognition's templates)."""
        weighted = embedding * np.float32(max(quality, 1e-3))
        self.embeddings_sum = weighted if self.embeddings_sum is None else self.embeddings_sum + weighted
        norm = float(np.linalg.norm(self.embeddings_sum))
        return np.asarray(self.embeddings_sum / max(norm, 1e-12), np.float32)

    def seen(self, frame: int, timestamp: float, position: int | None = None) -> None:
        self.last_frame, self.last_timestamp = frame, timestamp
        self.faces += 1
        if self.first_position is None:
            self.first_position = position

    def embed_now(
        self,
        report: QualityReport,
        timestamp: float,
        face_id: str,
        box: NDArray[np.float32],
        settings: TrackingSettings,
    ) -> bool:
        """Whether this detected face is embedded: the track's first ``first_embeddings`` accepted faces, then
        every ``embed_interval_s``, or a clearly better one. Records it as embedded when so."""
        if not report.accepted:
            return False
        quality = face_quality(report)
        due = (
            self.earlier_embeddings + self.embedded < settings.first_embeddings
            or self.last_embed_timestamp is None
            or timestamp - self.last_embed_timestamp >= settings.embed_interval_s
            or quality >= self.last_embed_quality * settings.better_quality
        )
        if not due:
            return False
        self.last_embed_timestamp, self.last_embed_quality = timestamp, quality
        self.embedded += 1
        if quality > self.best_quality:
            self.best_quality, self.best_face = quality, face_id
            self.best_box = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        return True

    def summary(self, *, ended: bool) -> TrackSummary:
        return TrackSummary(
            self.camera,
            self.track,
            self.sequence,
            self.first_frame,
            self.last_frame,
            self.first_timestamp,
            self.last_timestamp,
            self.faces,
            self.embedded,
            self.best_face,
            self.best_box,
            max(self.best_quality, 0.0),
            ended,
        )

    def next_stretch(self) -> TrackLog:
        """The log of a long track's next appearance, keeping when and how well it was last embedded."""
        return TrackLog(
            self.camera,
            self.track,
            self.last_frame + 1,
            self.last_timestamp,
            sequence=self.sequence + 1,
            last_embed_timestamp=self.last_embed_timestamp,
            last_embed_quality=self.last_embed_quality,
            earlier_embeddings=self.earlier_embeddings + self.embedded,
            embeddings_sum=self.embeddings_sum,
        )
