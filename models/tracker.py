"""Faces followed through one camera's frames: a constant-velocity Kalman filter per face, matched by overlap.

SORT-style: at each frame every track predicts its box; on frames the detector ran, predictions and
detections are paired by the Hungarian method on 1 - IoU, and a pair is accepted only above a minimum
overlap, so a face that jumps starts a new track. Tracks whose predicted boxes overlap each other are ended
before matching: two crossing faces may swap boxes, and a swapped track would tie two people together.
A track that misses ``max_misses`` detections in a row has left the scene and ends. Landmarks are kept
relative to the box of the last detection and follow the predicted box on frames without one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

FloatArray = NDArray[np.float32]

# State: centre x, centre y, width, height and their velocities (pixels per frame).
_TRANSITION = np.eye(8)
_TRANSITION[:4, 4:] = np.eye(4)
_OBSERVATION = np.eye(4, 8)


def iou_matrix(a: FloatArray, b: FloatArray) -> NDArray[np.float64]:
    """Pairwise intersection over union of (n, 4) and (m, 4) boxes given as x1, y1, x2, y2."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a64, b64 = a.astype(np.float64)[:, None, :], b.astype(np.float64)[None, :, :]
    width = (np.minimum(a64[..., 2], b64[..., 2]) - np.maximum(a64[..., 0], b64[..., 0])).clip(0)
    height = (np.minimum(a64[..., 3], b64[..., 3]) - np.maximum(a64[..., 1], b64[..., 1])).clip(0)
    inter = width * height
    area_a = (a64[..., 2] - a64[..., 0]) * (a64[..., 3] - a64[..., 1])
    area_b = (b64[..., 2] - b64[..., 0]) * (b64[..., 3] - b64[..., 1])
    result: NDArray[np.float64] = inter / np.maximum(area_a + area_b - inter, 1e-9)
    return result


def _to_state(box: FloatArray) -> NDArray[np.float64]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1.0), max(y2 - y1, 1.0)])


@dataclass
class KalmanBox:
    """Constant-velocity Kalman filter over a box's centre and size."""

    mean: NDArray[np.float64]
    covariance: NDArray[np.float64]

    @classmethod
    def start(cls, box: FloatArray) -> KalmanBox:
        mean = np.concatenate([_to_state(box), np.zeros(4)])
        size = float(max(mean[2], mean[3]))
        # Unknown velocity at first: a wide prior on it, scaled to the face's size.
        variance = np.array([0.1, 0.1, 0.1, 0.1, 1.0, 1.0, 0.5, 0.5]) * size
        return cls(mean, np.diag(variance**2))

    def _noise(self, position: float, velocity: float) -> NDArray[np.float64]:
        size = float(max(self.mean[2], self.mean[3], 1.0))
        return np.diag(np.array([position] * 4 + [velocity] * 4) ** 2 * size**2)

    def predict(self) -> None:
        self.mean = _TRANSITION @ self.mean
        self.mean[2:4] = np.maximum(self.mean[2:4], 1.0)
        self.covariance = _TRANSITION @ self.covariance @ _TRANSITION.T + self._noise(0.05, 0.02)

    def update(self, box: FloatArray) -> None:
        measured = _to_state(box)
        noise = self._noise(0.05, 0.0)[:4, :4]
        innovation = _OBSERVATION @ self.covariance @ _OBSERVATION.T + noise
        gain = self.covariance @ _OBSERVATION.T @ np.linalg.inv(innovation)
        self.mean = self.mean + gain @ (measured - _OBSERVATION @ self.mean)
        self.covariance = (np.eye(8) - gain @ _OBSERVATION) @ self.covariance

    def box(self) -> FloatArray:
        cx, cy, w, h = self.mean[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


@dataclass
class Track:
    id: str
    kalman: KalmanBox
    #: Landmarks of the last detection, relative to its box: (x - x1) / width, (y - y1) / height.
    relative_landmarks: FloatArray
    score: float
    detection: int | None = None  # index of the detection matched on this frame, None if predicted
    misses: int = 0

    def box(self) -> FloatArray:
        return self.kalman.box()

    def landmarks(self) -> FloatArray:
        box = self.box()
        size = np.array([box[2] - box[0], box[3] - box[1]], np.float32)
        return (box[:2] + self.relative_landmarks * size).astype(np.float32)


def _relative(box: FloatArray, landmarks: FloatArray) -> FloatArray:
    size = np.maximum(np.array([box[2] - box[0], box[3] - box[1]], np.float32), 1.0)
    return ((landmarks - box[:2]) / size).astype(np.float32)


@dataclass(frozen=True)
class TrackerParams:
    match_iou: float = 0.3
    crossing_iou: float = 0.2
    max_misses: int = 1


class FaceTracker:
    """The tracks of one camera. ``new_id`` names a track started by detection ``index`` of the frame."""

    def __init__(self, params: TrackerParams) -> None:
        self.params = params
        self.tracks: list[Track] = []

    def predict(self) -> list[Track]:
        """Advances every track one frame; returns the tracks that ended because they overlap another."""
        for track in self.tracks:
            track.kalman.predict()
            track.detection = None
        if len(self.tracks) < 2:
            return []
        overlap = iou_matrix(np.stack([t.box() for t in self.tracks]), np.stack([t.box() for t in self.tracks]))
        np.fill_diagonal(overlap, 0.0)
        crossing = overlap.max(axis=1) > self.params.crossing_iou
        ended = [t for t, c in zip(self.tracks, crossing, strict=True) if c]
        self.tracks = [t for t, c in zip(self.tracks, crossing, strict=True) if not c]
        return ended

    def update(
        self, boxes: FloatArray, scores: FloatArray, landmarks: FloatArray, new_ids: list[str]
    ) -> tuple[list[Track], list[Track]]:
        """Matches a frame's detections to the predicted tracks; returns (started, ended) tracks.

        ``new_ids[i]`` is the id a track started by detection ``i`` gets. Matched tracks take the detection's
        box, score and landmarks; unmatched detections start tracks; tracks unmatched too often end.
        """
        predicted = np.stack([t.box() for t in self.tracks]) if self.tracks else np.zeros((0, 4), np.float32)
        overlap = iou_matrix(predicted, boxes)
        matched_tracks: set[int] = set()
        matched_detections: set[int] = set()
        if overlap.size:
            rows, cols = linear_sum_assignment(1.0 - overlap)
            for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
                if overlap[row, col] >= self.params.match_iou:
                    matched_tracks.add(row)
                    matched_detections.add(col)
                    track = self.tracks[row]
                    track.kalman.update(boxes[col])
                    track.relative_landmarks = _relative(boxes[col], landmarks[col])
                    track.score = float(scores[col])
                    track.detection = col
                    track.misses = 0
        ended: list[Track] = []
        kept: list[Track] = []
        for position, track in enumerate(self.tracks):
            if position not in matched_tracks:
                track.misses += 1
                if track.misses > self.params.max_misses:
                    ended.append(track)
                    continue
            kept.append(track)
        started = [
            Track(
                new_ids[i],
                KalmanBox.start(boxes[i]),
                _relative(boxes[i], landmarks[i]),
                float(scores[i]),
                detection=i,
            )
            for i in range(len(boxes))
            if i not in matched_detections
        ]
        self.tracks = kept + started
        return started, ended

    def visible(self) -> list[Track]:
        """Tracks with a face on this frame: matched now, or predicted since their last detection matched."""
        return [t for t in self.tracks if t.misses == 0]

    def end_all(self) -> list[Track]:
        ended, self.tracks = self.tracks, []
        return ended
