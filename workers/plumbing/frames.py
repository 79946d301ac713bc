"""A source's frame as the pipeline takes it: the one conversion between streaming's ``Frame`` (what a camera,
a file or a folder yields) and models' ``CameraFrame`` (what the pipeline tracks). Each ground room keeps its
own type so that neither imports the other; this is where one becomes the other."""

from __future__ import annotations

from models.frames import CameraFrame
from streaming.sources import Frame


def camera_frame(frame: Frame) -> CameraFrame:
    """The pipeline's frame of a source's: a named image (a photo of a folder) is a still, never tracked."""
    return CameraFrame.decoded(
        frame.source, frame.number, frame.timestamp, frame.image, still=frame.name is not None, session=frame.session
    )
