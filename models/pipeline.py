"""Frames to face observations, the one path for `facestream run` and the embed worker.

For each batch of frames (any cameras, each camera's frames in order), in waves:
1. per frame, from its grey copy alone (``models.camera_plan``): is it a new size, out of order, after a gap,
   a cut, a jump? does the detector run on it (a cadence; forced by a jump; slowed where nothing moves and
   no face is tracked)? A frame whose answer needs the faces of a detection earlier in the batch waits for
   the next wave, so the answers never depend on the batching;
2. the detector runs once per wave on the chosen frames, at their own aspect: only these are decoded whole;
3. per frame in order, the camera's tracker predicts, matches the detections, starts and ends tracks; each
   visible track is one face of the frame; the policy picks the faces to embed (a track's first few accepted
   faces, then every ``embed_interval_s``, or a clearly better one);
4. the chosen faces of the whole batch are embedded in one call; a tracked face carries its track's template
   (the quality-weighted mean of the track's embeddings so far), not its own embedding alone.
Tracker state lives in this object, per camera: losing it (a restart, a rebalance) starts new tracks and
changes nothing else. With tracking off, every frame is detected and every accepted face embedded on its own.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from models.analyzer import FaceAnalyzer
from models.camera_plan import CameraState, FramePlan, plan_frame
from models.detection import Detections
from models.errors import ModelError
from models.frames import (
    CameraFrame,
    FaceObservation,
    FrameResult,
    PipelineCounters,
    carried_face_id,
    face_id,
    track_id,
)
from models.motion import smallest_face_pixels
from models.quality import QualityReport
from models.settings import TrackingSettings
from models.track_log import TrackLog, TrackSummary, face_quality
from models.tracker import FaceTracker, Track, TrackerParams

log = logging.getLogger(__name__)


#: A frame's detections, their aligned crops and their quality reports (where the detector ran on it).
_Described = tuple[Detections, NDArray[np.uint8], list[QualityReport]]


@dataclass(frozen=True)
class _ToEmbed:
    """A face of a frame to embed: its place among the frame's faces, its crop, its track's log (tracked)."""

    index: int
    crop: NDArray[np.uint8]
    log: TrackLog | None = None


class FacePipeline:
    def __init__(self, analyzer: FaceAnalyzer, settings: TrackingSettings) -> None:
        self.analyzer = analyzer
        self.settings = settings
        self.counters = PipelineCounters()
        self._params = TrackerParams(settings.match_iou, settings.crossing_iou, settings.max_misses)
        self._cameras: OrderedDict[str, CameraState] = OrderedDict()
        #: Changed pixels of a grey copy that count as motion: the area of the smallest face that is embedded.
        self._least_motion = smallest_face_pixels(analyzer.settings.quality.min_face_size)
        #: Appearances of cameras evicted while planning, reported with the next frame's result.
        self._evicted: list[TrackSummary] = []

    def process(self, frames: Sequence[CameraFrame]) -> list[FrameResult]:
        """Faces of each frame, in order; frames of one camera must come in their order."""
        timings = self.analyzer.timings
        results: dict[int, FrameResult] = {}  # by the frame's place in ``frames``
        pending: list[tuple[int, _ToEmbed]] = []  # (result, face) to embed
        waiting = list(range(len(frames)))
        while waiting:
            with timings.stage("motion"):  # cuts, motion and which frames to detect, from small grey copies
                planned, waiting = self._wave(frames, waiting)
            chosen = [i for i, plan in planned if plan.detect]
            with timings.stage("decode"):  # only the frames the detector runs on are decoded whole
                images = [frames[i].image for i in chosen]
            with timings.stage("detect"):
                found = self.analyzer.detector.detect(images)
            detections: dict[int, Detections] = dict(zip(chosen, found, strict=True))
            started, aligned = time.perf_counter(), timings.seconds["align"]
            for i, plan in planned:
                results[i], faces = self._frame(frames[i], plan, detections.get(i))
                pending += [(i, face) for face in faces]
            # The tracker's share of the frames' steps: their time less the aligning done inside them.
            timings.add("track", time.perf_counter() - started - (timings.seconds["align"] - aligned))
        done = [results[i] for i in range(len(frames))]  # every wave plans at least each camera's next frame
        self._embed(done, pending)
        for result in done:
            self.counters.add(result)
        return done

    def _embed(self, results: list[FrameResult], pending: list[tuple[int, _ToEmbed]]) -> None:
        """Embeds the chosen faces of a batch in one call; a tracked face carries its track's template."""
        with self.analyzer.timings.stage("embed"):
            crops = [f.crop for _, f in pending]
            vectors = self.analyzer.embedder.embed(np.stack(crops)) if crops else np.zeros((0, 0), np.float32)
        for n, (i, face) in enumerate(pending):
            observation = results[i].faces[face.index]
            vector = vectors[n]
            if face.log is not None and self.settings.track_template and observation.quality is not None:
                vector = face.log.template_with(vector, face_quality(observation.quality))
            results[i].faces[face.index] = replace(observation, crop=face.crop, embedding=vector)

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

    # -- step 1: what happens on each frame, decided from the pictures ----------------------------------------

    def _wave(self, frames: Sequence[CameraFrame], waiting: list[int]) -> tuple[list[tuple[int, FramePlan]], list[int]]:
        """The plans of the waiting frames that can be planned now, in order, and the frames that wait for the
        faces of a detection planned in this wave (with every later frame of their camera)."""
        planned: list[tuple[int, FramePlan]] = []
        later: list[int] = []
        detecting: set[str] = set()  # cameras with a detection in this wave: their faces are not known yet
        held: set[str] = set()  # cameras whose next frame waits for the next wave
        for i in waiting:
            frame = frames[i]
            plan = None if frame.camera in held else self._plan(frame, frame.camera not in detecting)
            if plan is None:
                held.add(frame.camera)
                later.append(i)
                continue
            planned.append((i, plan))
            if plan.detect:
                detecting.add(frame.camera)
        return planned, later

    def _plan(self, frame: CameraFrame, faces_known: bool) -> FramePlan | None:
        if frame.still or not self.settings.enabled:
            return FramePlan(None, True)
        state = self._cameras.get(frame.camera)
        if state is None:
            state = self._add_camera(frame.camera)
        self._cameras.move_to_end(frame.camera)
        return plan_frame(state, frame, self.settings, self._least_motion, faces_known)

    def _add_camera(self, camera: str) -> CameraState:
        state = CameraState(FaceTracker(self._params))
        self._cameras[camera] = state
        if len(self._cameras) > self.settings.max_cameras:
            oldest, _ = next(iter(self._cameras.items()))
            log.info("tracking more than %d cameras: ending the tracks of %s", self.settings.max_cameras, oldest)
            self._evicted.extend(self.end_cameras([oldest]))
        return state

    # -- step 3: tracks and faces of one frame --------------------------------------------------------------

    def _frame(
        self, frame: CameraFrame, plan: FramePlan, found: Detections | None
    ) -> tuple[FrameResult, list[_ToEmbed]]:
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
        described: _Described | None = None
        if found is not None:
            appearances += self._match(state, frame, found)
            described = (found, *self.analyzer.describe(frame.image, found))
        faces, to_embed = self._observations(state, frame, described)
        for track in tracker.visible():
            face_log = state.logs[track.id]
            if face_log.last_timestamp - face_log.first_timestamp >= self.settings.appearance_max_s:
                appearances.append(face_log.summary(ended=False))
                state.logs[track.id] = face_log.next_stretch()
        result = FrameResult(frame.camera, frame.number, frame.timestamp, faces, appearances, plan.reset, plan.detect)
        return result, to_embed

    def _match(self, state: CameraState, frame: CameraFrame, found: Detections) -> list[TrackSummary]:
        """Matches the frame's detections to the camera's tracks; the appearances of the tracks that ended."""
        new_ids = [track_id(frame.stream, frame.number, i) for i in range(len(found))]
        started, ended = state.tracker.update(found.boxes, found.scores, found.landmarks, new_ids)
        state.faces_in_view = bool(state.tracker.tracks)
        for track in started:
            state.logs[track.id] = TrackLog(frame.camera, track.id, frame.number, frame.timestamp)
        return self._end(state, ended)

    def _observations(
        self,
        state: CameraState,
        frame: CameraFrame,
        described: _Described | None,
    ) -> tuple[list[FaceObservation], list[_ToEmbed]]:
        """A face per visible track, and the faces of them to embed."""
        visible = state.tracker.visible()
        faces: list[FaceObservation] = []
        to_embed: list[_ToEmbed] = []
        for index, track in enumerate(visible):
            # A detected face is named by its rank among the frame's detections, which a replay of the frame
            # reproduces whatever the tracks were; a carried one by its rank among the frame's carried faces.
            detection = track.detection if described is not None else None
            if detection is not None:
                identifier = face_id(frame.stream, frame.number, detection)
            else:
                identifier = carried_face_id(frame.stream, frame.number, index)
            face_log = state.logs[track.id]
            face_log.seen(frame.number, frame.timestamp, frame.position)
            report: QualityReport | None = None
            if described is not None and detection is not None:
                found, crops, reports = described
                report = reports[detection]
                box, landmarks = found.boxes[detection], found.landmarks[detection]
                if face_log.embed_now(report, frame.timestamp, identifier, box, self.settings):
                    to_embed.append(_ToEmbed(index, crops[detection], face_log))
            else:
                box, landmarks = track.box(), track.landmarks()
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
                    cooccurring=tuple(t.id for t in visible if t is not track),
                )
            )
        return faces, to_embed

    @staticmethod
    def _end(state: CameraState, tracks: list[Track]) -> list[TrackSummary]:
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
