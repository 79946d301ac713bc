"""What happens on each frame of a tracked camera, decided from its grey copy alone (``models.motion``): does
it end the camera's tracks (a new size, a frame out of order, a gap, a cut, a new session), and does the
detector run on it?

The detector runs on the camera's first frame, after any reset, on a jump in the picture, and on a cadence
(``detect_interval`` frames, ``detect_every_s`` seconds). The cadence slows to ``idle_detect_every_s`` where
nothing can have changed for the detector: no face was tracked after the camera's last detection and no area
the size of the smallest embeddable face has changed since. Whether faces were tracked is known only once
that detection has run, so a frame that needs it waits for it (``plan_frame`` returns None); every answer
depends on the camera's own frames and detections only, never on how its frames were batched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from models.frames import CameraFrame, TrackReset
from models.motion import GreyImage, changed_pixels, cut_thumb, mean_change
from models.settings import TrackingSettings
from models.track_log import TrackLog
from models.tracker import FaceTracker

#: Slack on comparisons of stream times, whose sums of frame intervals are not exact in floating point.
_TIME_SLACK_S = 1e-6


@dataclass
class CameraState:
    tracker: FaceTracker
    shape: tuple[int, ...] = ()
    last_number: int = -1
    session: str | None = None
    last_timestamp: float = 0.0
    thumb: NDArray[np.float32] | None = None
    since_detection: int = 0
    detected_at: float = 0.0  # timestamp of the last frame the detector ran on
    seen_at_detection: GreyImage | None = None  # the grey copy of that frame
    faces_in_view: bool = True  # the tracker had tracks right after that detection
    logs: dict[str, TrackLog] = field(default_factory=dict)
    arrived: float = 0.0  # time.monotonic() of the camera's last frame


@dataclass(frozen=True)
class FramePlan:
    reset: TrackReset | None
    detect: bool


def plan_frame(
    state: CameraState, frame: CameraFrame, settings: TrackingSettings, least_motion: int, faces_known: bool
) -> FramePlan | None:
    """The frame's plan, recorded in ``state``; None (``state`` untouched) when the answer depends on the faces
    tracked after a detection of this camera that has not run yet (``faces_known`` False).

    ``least_motion``: changed pixels of the grey copy that count as motion (``models.motion.smallest_face_pixels``).
    """
    reset = _reset_of(state, frame, settings)
    grey = frame.picture.grey()
    thumb = cut_thumb(grey)
    change = 0.0
    if reset is None and state.thumb is not None:
        change = mean_change(thumb, state.thumb)
        if change >= settings.cut_threshold:
            reset = TrackReset.CUT
    detect = state.last_number < 0 or reset is not None or change >= settings.motion_threshold
    if not detect and _cadence_due(state, frame, settings):
        if _idle(state, frame, grey, settings, least_motion):
            if not faces_known:
                return None
            detect = state.faces_in_view
        else:
            detect = True
    state.arrived = time.monotonic()
    state.shape, state.last_number, state.last_timestamp = frame.picture.shape, frame.number, frame.timestamp
    state.thumb, state.session = thumb, frame.session
    state.since_detection = 0 if detect else state.since_detection + 1
    if detect:
        state.detected_at, state.seen_at_detection = frame.timestamp, grey
    return FramePlan(reset, detect)


def _reset_of(state: CameraState, frame: CameraFrame, settings: TrackingSettings) -> TrackReset | None:
    if state.last_number < 0:
        return None
    if frame.session != state.session:
        return TrackReset.SESSION
    if frame.picture.shape != state.shape:
        return TrackReset.FRAME_SIZE
    if frame.number <= state.last_number:
        return TrackReset.FRAME_ORDER
    if abs(frame.timestamp - state.last_timestamp) > settings.max_gap_s:
        return TrackReset.GAP
    return None


def _cadence_due(state: CameraState, frame: CameraFrame, settings: TrackingSettings) -> bool:
    return (
        state.since_detection + 1 >= settings.detect_interval
        or frame.timestamp - state.detected_at >= settings.detect_every_s - _TIME_SLACK_S
    )


def _idle(
    state: CameraState, frame: CameraFrame, grey: GreyImage, settings: TrackingSettings, least_motion: int
) -> bool:
    """Nothing moved since the camera's last detection, and it is not yet time to look anyway."""
    if frame.timestamp - state.detected_at >= settings.idle_detect_every_s - _TIME_SLACK_S:
        return False
    if state.seen_at_detection is None:
        return False
    return changed_pixels(grey, state.seen_at_detection, settings.motion_pixel_change) < least_motion
