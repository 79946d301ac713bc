"""Frames of the shared clips, and a pipeline run over them, for the tracking tests."""

from __future__ import annotations

from models.frames import CameraFrame, FrameResult
from models.pipeline import FacePipeline
from streaming.sources import Frame, FrameSource
from tests.conftest import data_dir


def run_frames(pipeline: FacePipeline, frames: list[CameraFrame]) -> list[FrameResult]:
    results = []
    for start in range(0, len(frames), 8):
        results += pipeline.process(frames[start : start + 8])
    return results


def clip_frames(name: str, camera: str, first: int = 0, start_s: float = 0.0) -> list[CameraFrame]:
    source = FrameSource(str(data_dir("videos", name)), camera)
    return [
        CameraFrame.decoded(camera, first + f.number, start_s + f.timestamp, f.image)
        for f in source
        if isinstance(f, Frame)
    ]
