"""Frames to face observations, the one path for `facestream run` and the embed worker.

For each batch of frames (any cameras, each camera's frames in order):
1. per frame, from the pictures alone: is it a new size, out of order, after a gap, a cut, a jump? does the
   detector run on it (one frame in ``detect_interval``, or forced)?
2. the detector runs once on the chosen frames, at their own aspect;
3. per frame in order, the camera's tracker predicts, matches the detections, starts and ends tracks; each
   visible track is one face of the frame; the policy picks the faces to embed (a track's first few accepted
   faces, then every ``embed_interval_s``, or a clearly better one);
4. the chosen faces are embedded in one call; a tracked face carries its track's template (the
   quality-weighted mean of the track's embeddings so far), not its own embedding alone.
Tracker state lives in this object, per camera: losing it (a restart, a rebalance) starts new tracks and
changes nothing else. With tracking off, every frame is detected and every accepted face embedded on its own.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from numpy.typing import NDArray

from models.analyzer import FaceAnalyzer
from models.detection import Detections
from models.errors import ModelError
from models.frames import (
    CameraFrame,
    FaceObservation,
    FrameResult,
    PipelineCounters,
    TrackReset,
    carried_face_id,
    face_id,
    track_id,
)
from models.quality import QualityReport
from models.settings import TrackingSettings
from models.track_log import TrackLog, TrackSummary, face_quality
from models.tracker import FaceTracker, Track, TrackerParams

log = logging.getLogger(__name__)

_THUMB_SIZE = (64, 36)  # a small grey copy of each frame, to see cuts and motion


@dataclass
class _Camera:
    tracker: FaceTracker
    shape: tuple[int, ...] = ()
    last_number: int = -1
    session: str | None = None
    last_timestamp: float = 0.0
    thumb: NDArray[np.float32] | None = None
    since_detection: int = 0
    detected_at: float = 0.0  # timestamp of the last frame the detector ran on
    logs: dict[str, TrackLog] = field(default_factory=dict)
    arrived: float = 0.0  # time.monotonic() of the camera's last frame


@dataclass(frozen=True)
class _ToEmbed:
    """A face of a frame to embed: its place among the frame's faces, its crop, its track's log (tracked)."""

    index: int
    crop: NDArray[np.uint8]
    log: TrackLog | None = None


@dataclass(frozen=True)
class _Plan:
    reset: TrackReset | None
    detect: bool


class FacePipeline:
    def __init__(self, analyzer: FaceAnalyzer, settings: TrackingSettings) -> None:
        self.analyzer = analyzer
        self.settings = settings
        self.counters = PipelineCounters()
        self._params = TrackerParams(settings.match_iou, settings.crossing_iou, settings.max_misses)
        self._cameras: OrderedDict[str, _Camera] = OrderedDict()
        #: Appearances of cameras evicted while planning, reported with the next frame's result.
        self._evicted: list[TrackSummary] = []

    def process(self, frames: Sequence[CameraFrame]) -> list[FrameResult]:
        """Faces of each frame, in order; frames of one camera must come in their order."""
        timings = self.analyzer.timings
        with timings.stage("motion"):  # cuts, motion and which frames to detect, from small grey copies
            plans = [self._plan(frame) for frame in frames]
        chosen = [i for i, plan in enumerate(plans) if plan.detect]
        with timings.stage("detect"):
            found = self.analyzer.detector.detect([frames[i].image for i in chosen])
        detections: dict[int, Detections] = dict(zip(chosen, found, strict=True))
        results: list[FrameResult] = []
        pending: list[tuple[int, _ToEmbed]] = []  # (result, face) to embed
        started, aligned = time.perf_counter(), timings.seconds["align"]
        for i, (frame, plan) in enumerate(zip(frames, plans, strict=True)):
            result, faces = self._frame(frame, plan, detections.get(i))
            pending += [(i, face) for face in faces]
            results.append(result)
        # The tracker's share of the frames' steps: their time less the aligning done inside them.
        timings.add("track", time.perf_counter() - started - (timings.seconds["align"] - aligned))
        with timings.stage("embed"):
            crops = [f.crop for _, f in pending]
            vectors = self.analyzer.embedder.embed(np.stack(crops)) if crops else np.zeros((0, 0), np.float32)
        for n, (i, face) in enumerate(pending):
            observation = results[i].faces[face.index]
            vector = vectors[n]
            if face.log is not None and self.settings.track_template and observation.quality is not None:
                vector = face.log.template_with(vector, face_quality(observation.quality))
            results[i].faces[face.index] = replace(observation, crop=face.crop, embedding=vector)
        for result in results:
            self.counters.add(result)
        return results

    def finish(self) -> list[TrackSummary]:
        """Ends every track (the stream ended); their appearances."""
        return self.end_cameras(list(self._cameras))

    def open_since(self, camera: str) -> int | None:
        """The position of the first frame of the camera's oldest open appearance: no frame before it is still
        waiting for its appearance to be reported. None when the camera has no open track with a face."""
        state = self._cameras.get(camera)
        if state is None:
            return None
        positions = [log.first_position for log in state.logs.values() if log.first_position is not None]
        return min(positions, default=None)

    def end_idle(self, idle_s: float) -> list[TrackSummary]:
        """Ends the tracks of cameras that sent no frame for ``idle_s`` seconds (a live stream that stopped)."""
        now = time.monotonic()
        idle = [c for c, state in self._cameras.items() if state.tracker.tracks and now - state.arrived > idle_s]
        return self.end_cameras(idle)

    def end_cameras(self, cameras: Sequence[str]) -> list[TrackSummary]:
        """Ends the tracks of these cameras (their partitions went to another worker); their appearances."""
        ended: list[TrackSummary] = []
        for camera in cameras:
            state = self._cameras.pop(camera, None)
            if state is not None:
                ended += self._end(state, state.tracker.end_all())
        return ended

    # -- step 1: what happens on each frame, decided from the pictures --------------------------------------

    def _plan(self, frame: CameraFrame) -> _Plan:
        settings = self.settings
        if frame.still or not settings.enabled:
            return _Plan(None, True)
        state = self._cameras.get(frame.camera)
        if state is None:
            state = self._add_camera(frame.camera)
        self._cameras.move_to_end(frame.camera)
        state.arrived = time.monotonic()
        reset: TrackReset | None = None
        if state.last_number >= 0:
            if frame.session != state.session:
                reset = TrackReset.SESSION
            elif frame.image.shape != state.shape:
                reset = TrackReset.FRAME_SIZE
            elif frame.number <= state.last_number:
                reset = TrackReset.FRAME_ORDER
            elif abs(frame.timestamp - state.last_timestamp) > settings.max_gap_s:
                reset = TrackReset.GAP
        thumb = cv2.resize(cv2.cvtColor(frame.image, cv2.COLOR_BGR2GRAY), _THUMB_SIZE, interpolation=cv2.INTER_AREA)
        thumb_f = thumb.astype(np.float32)
        change = 0.0
        if reset is None and state.thumb is not None:
            change = float(np.abs(thumb_f - state.thumb).mean())
            if change >= settings.cut_threshold:
                reset = TrackReset.CUT
        detect = (
            state.last_number < 0
            or reset is not None
            or state.since_detection + 1 >= settings.detect_interval
            or frame.timestamp - state.detected_at >= settings.detect_every_s - 1e-6
            or change >= settings.motion_threshold
        )
        state.shape, state.last_number, state.last_timestamp, state.thumb, state.session = (
            frame.image.shape,
            frame.number,
            frame.timestamp,
            thumb_f,
            frame.session,
        )
        state.since_detection = 0 if detect else state.since_detection + 1
        if detect:
            state.detected_at = frame.timestamp
        return _Plan(reset, detect)

    def _add_camera(self, camera: str) -> _Camera:
        state = _Camera(FaceTracker(self._params))
        self._cameras[camera] = state
        if len(self._cameras) > self.settings.max_cameras:
            oldest, _ = next(iter(self._cameras.items()))
            log.info("tracking more than %d cameras: ending the tracks of %s", self.settings.max_cameras, oldest)
            self._evicted.extend(self.end_cameras([oldest]))
        return state

    # -- step 3: tracks and faces of one frame --------------------------------------------------------------

    def _frame(self, frame: CameraFrame, plan: _Plan, found: Detections | None) -> tuple[FrameResult, list[_ToEmbed]]:
        if frame.still or not self.settings.enabled:
            if found is None:  # _plan detects every still and every frame with tracking off
                raise ModelError(f"frame {frame.number} of {frame.camera} was planned without a detection")
            return self._untracked(frame, found)
        state = self._cameras[frame.camera]
        appearances, self._evicted = self._evicted, []
        tracker = state.tracker
        if plan.reset is not None:
            appearances += self._end(state, tracker.end_all())
        appearances += self._end(state, tracker.predict())
        reports: list[QualityReport] = []
        crops: NDArray[np.uint8] | None = None
        if found is not None:
            new_ids = [track_id(frame.stream, frame.number, i) for i in range(len(found))]
            started, ended = tracker.update(found.boxes, found.scores, found.landmarks, new_ids)
            appearances += self._end(state, ended)
            for track in started:
                state.logs[track.id] = TrackLog(frame.camera, track.id, frame.number, frame.timestamp)
            crops, reports = self.analyzer.describe(frame.image, found)
        visible = tracker.visible()
        faces: list[FaceObservation] = []
        to_embed: list[_ToEmbed] = []
        for index, track in enumerate(visible):
            # A detected face is named by its rank among the frame's detections, which a replay of the frame
            # reproduces whatever the tracks were; a carried one by its rank among the frame's carried faces.
            if track.detection is not None and found is not None:
                identifier = face_id(frame.stream, frame.number, track.detection)
            else:
                identifier = carried_face_id(frame.stream, frame.number, index)
            face_log = state.logs[track.id]
            face_log.seen(frame.number, frame.timestamp, frame.position)
            report: QualityReport | None = None
            if found is not None and crops is not None and track.detection is not None:
                report = reports[track.detection]
                box, landmarks = found.boxes[track.detection], found.landmarks[track.detection]
                if face_log.embed_now(report, frame.timestamp, identifier, box, self.settings):
                    to_embed.append(_ToEmbed(index, crops[track.detection], face_log))
            else:
                box, landmarks = track.box(), track.landmarks()
            others = tuple(t.id for t in visible if t is not track)
            faces.append(
                FaceObservation(
                    face_id=identifier,
                    camera=frame.camera,
                    frame=frame.number,
                    timestamp=frame.timestamp,
                    box=np.asarray(box, np.float32),
                    landmarks=np.asarray(landmarks, np.float32),
                    score=track.score,
                    quality=report,
                    track=track.id,
                    detected=report is not None,
                    crop=None,  # filled in with the embedding, for the faces that get one
                    embedding=None,
                    cooccurring=others,
                )
            )
        for track in visible:
            face_log = state.logs[track.id]
            if face_log.last_timestamp - face_log.first_timestamp >= self.settings.appearance_max_s:
                appearances.append(face_log.summary(ended=False))
                state.logs[track.id] = face_log.next_stretch()
        result = FrameResult(frame.camera, frame.number, frame.timestamp, faces, appearances, plan.reset, plan.detect)
        return result, to_embed

    @staticmethod
    def _end(state: _Camera, tracks: list[Track]) -> list[TrackSummary]:
        """The appearances of tracks that ended (those with at least one face)."""
        logs = [state.logs.pop(track.id, None) for track in tracks]
        return [face_log.summary(ended=True) for face_log in logs if face_log is not None and face_log.faces]

    # -- tracking off: every face on its own ----------------------------------------------------------------

    def _untracked(self, frame: CameraFrame, found: Detections) -> tuple[FrameResult, list[_ToEmbed]]:
        crops, reports = self.analyzer.describe(frame.image, found)
        faces = [
            FaceObservation(
                face_id=face_id(frame.stream, frame.number, i),
                camera=frame.camera,
                frame=frame.number,
                timestamp=frame.timestamp,
                box=found.boxes[i],
                landmarks=found.landmarks[i],
                score=float(found.scores[i]),
                quality=report,
                track=None,
                detected=True,
                crop=None,  # filled in with the embedding, for the faces that get one
                embedding=None,
            )
            for i, report in enumerate(reports)
        ]
        to_embed = [_ToEmbed(i, crops[i]) for i, report in enumerate(reports) if report.accepted]
        return FrameResult(frame.camera, frame.number, frame.timestamp, faces, []), to_embed
