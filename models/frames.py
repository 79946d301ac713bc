"""What goes into the face pipeline (frames of cameras) and what comes out of it (faces and appearances, per
frame), with the counts a job or a worker reports (models/pipeline.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from models.motion import GreyImage, reduced_grey
from models.quality import QualityReport
from models.track_log import TrackSummary

FloatArray = NDArray[np.float32]


def stream_of(camera: str, session: str | None) -> str:
    """What a camera's ids start with: ``camera@session`` where its producer names the connection (a session),
    so that a camera whose frames are numbered from 0 again after a reconnect never reuses an id; the bare
    camera id for a source that has no sessions (a file `facestream run` reads, another make of producer)."""
    return camera if session is None else f"{camera}@{session}"


def face_id(stream: str, frame: int, index: int) -> str:
    """The stable id of a detected face: its stream (``stream_of``), frame number and rank among the frame's
    detections; a replay of the same frame gives the same id."""
    return f"{stream}:{frame}:{index}"


def carried_face_id(stream: str, frame: int, index: int) -> str:
    """The id of a face the tracker carried over a frame the detector skipped: never one of a detected face."""
    return f"{stream}:{frame}:c{index}"


def track_id(stream: str, frame: int, detection: int) -> str:
    """A track's id, unique since a stream's frames are numbered once (`stream:t<frame>.<n>`)."""
    return f"{stream}:t{frame}.{detection}"


class TrackReset(StrEnum):
    """Why every track of a camera ended at a frame."""

    CUT = "cut"
    FRAME_SIZE = "frame_size"  # the camera's frames changed size
    FRAME_ORDER = "frame_order"  # a frame number repeated or went backwards
    GAP = "gap"  # frames further apart in time than max_gap_s
    EVICTED = "evicted"  # more cameras than max_cameras
    SESSION = "session"  # the camera's producer connected anew: no track spans the gap


class Picture(Protocol):
    """A frame's picture, decoded only as far as it is looked at: most frames of a tracked camera are seen only
    as a small grey copy (cuts, motion, which frames to detect); the detector's frames are decoded whole."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, 3) of the whole picture, known without decoding its pixels."""
        ...

    def grey(self) -> GreyImage:
        """The picture in grey at an eighth of its size (``models.motion.reduced_grey``)."""
        ...

    def pixels(self) -> NDArray[np.uint8]:
        """The whole picture, BGR (decoded on the first call, the same array after)."""
        ...


class DecodedPicture:
    """A picture already decoded whole (a video file's frame, a photo)."""

    def __init__(self, image: NDArray[np.uint8]) -> None:
        self._image = image
        self._grey: GreyImage | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        height, width = self._image.shape[:2]
        return int(height), int(width), 3

    def grey(self) -> GreyImage:
        if self._grey is None:
            self._grey = reduced_grey(self._image)
        return self._grey

    def pixels(self) -> NDArray[np.uint8]:
        return self._image


@dataclass(frozen=True)
class CameraFrame:
    camera: str
    number: int
    timestamp: float
    picture: Picture
    #: A photo of a folder, not a video frame: detected on its own, never tracked.
    still: bool = False
    #: Where the frame sits in its input (a Kafka offset), to tell where a camera's open tracks began.
    position: int | None = None
    #: The producer's connection to the camera (a new one after every reconnect); None where it names none.
    session: str | None = None

    @property
    def stream(self) -> str:
        """What the ids of this frame's faces and tracks start with."""
        return stream_of(self.camera, self.session)

    @property
    def image(self) -> NDArray[np.uint8]:
        """The whole picture, BGR: decodes it where it was not yet (see ``Picture``)."""
        return self.picture.pixels()

    @classmethod
    def decoded(
        cls,
        camera: str,
        number: int,
        timestamp: float,
        image: NDArray[np.uint8],
        *,
        still: bool = False,
        session: str | None = None,
    ) -> CameraFrame:
        """A frame whose picture is already decoded (a file's, a photo's)."""
        return cls(camera, number, timestamp, DecodedPicture(image), still=still, session=session)


@dataclass(frozen=True, kw_only=True)
class FaceObservation:
    face_id: str
    camera: str
    frame: int
    timestamp: float
    box: FloatArray
    landmarks: FloatArray
    score: float  # the detector's score at the track's last detection
    quality: QualityReport | None  # None on frames the detector skipped
    track: str | None  # None with tracking off
    detected: bool  # False: the tracker predicted the box
    crop: NDArray[np.uint8] | None  # the aligned face, where it was embedded
    embedding: FloatArray | None
    #: Other tracks with a face on this frame: different people (a cannot-link for clustering).
    cooccurring: tuple[str, ...] = ()


@dataclass
class FrameResult:
    camera: str
    number: int
    timestamp: float
    faces: list[FaceObservation]
    #: Appearances reported at this frame, after its faces: tracks that ended, long tracks' stretches.
    appearances: list[TrackSummary]
    reset: TrackReset | None = None
    detected: bool = True


@dataclass
class PipelineCounters:
    frames: int = 0
    detected_frames: int = 0
    faces: int = 0
    embedded: int = 0
    appearances: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    resets: Counter[str] = field(default_factory=Counter)

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.detected_frames += result.detected
        self.faces += len(result.faces)
        self.appearances += len(result.appearances)
        if result.reset is not None:
            self.resets[result.reset.value] += 1
        for face in result.faces:
            self.embedded += face.embedding is not None
            if face.detected and face.quality is not None and face.quality.rejection is not None:
                self.rejected[face.quality.rejection.value] += 1
