"""Detect where something moves: a camera that sees nothing is detected about once a second, a face that comes
in is found as fast as before, a face in view keeps the cadence, and none of it depends on the batching."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from models.analyzer import FaceAnalyzer
from models.frames import CameraFrame, FrameResult
from models.pipeline import FacePipeline
from models.registry import sample_images
from models.settings import TrackingSettings
from streaming.decode import decode_image
from workers.plumbing.encoded_picture import EncodedPicture

FPS = 15.0
WIDTH, HEIGHT = 480, 270


@pytest.fixture(scope="module")
def person(analyzer: FaceAnalyzer) -> NDArray[np.uint8]:
    """A real face with some of its surroundings, about 70 pixels wide."""
    photo = decode_image(sample_images()[1].read_bytes())
    found = analyzer.detector.detect([photo])[0]
    x1, y1, x2, y2 = found.boxes[int(np.argmax(found.scores))]
    side = 1.8 * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    top, left = int(max(cy - side / 2, 0)), int(max(cx - side / 2, 0))
    patch = photo[top : int(cy + side / 2), left : int(cx + side / 2)]
    return np.asarray(cv2.resize(patch, (120, 120), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _scene(person: NDArray[np.uint8], number: int, at: tuple[int, int] | None) -> bytes:
    """A fixed camera's frame as the frames topic carries it: a still room with sensor noise, the person at
    ``at`` (top-left corner) or nobody."""
    rng = np.random.default_rng(number)
    ramp = np.linspace(60, 190, WIDTH, dtype=np.float32)[None, :, None]
    room = np.broadcast_to(ramp, (HEIGHT, WIDTH, 3)) + rng.normal(0, 2.0, (HEIGHT, WIDTH, 3))
    image = np.clip(room, 0, 255).astype(np.uint8)
    if at is not None:
        x, y = at
        image[y : y + person.shape[0], x : x + person.shape[1]] = person
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _frames(person: NDArray[np.uint8], places: list[tuple[int, int] | None]) -> list[CameraFrame]:
    return [CameraFrame("door", n, n / FPS, EncodedPicture(_scene(person, n, at))) for n, at in enumerate(places)]


def _run(analyzer: FaceAnalyzer, frames: list[CameraFrame], batch: int) -> list[FrameResult]:
    pipeline = FacePipeline(analyzer, TrackingSettings())
    results: list[FrameResult] = []
    for start in range(0, len(frames), batch):
        results += pipeline.process(frames[start : start + batch])
    return results


def _detected(results: list[FrameResult]) -> list[int]:
    return [r.number for r in results if r.detected]


def test_an_empty_still_scene_is_detected_about_once_a_second(
    analyzer: FaceAnalyzer, person: NDArray[np.uint8]
) -> None:
    results = _run(analyzer, _frames(person, [None] * 60), batch=8)
    assert _detected(results) == [0, 15, 30, 45]  # idle_detect_every_s: 1 s, where the cadence is a quarter
    assert not any(r.faces for r in results)


def test_a_face_that_comes_in_is_found_within_the_cadence(analyzer: FaceAnalyzer, person: NDArray[np.uint8]) -> None:
    # Nobody for 20 frames, then a person walking in from the left, 12 pixels a frame.
    places: list[tuple[int, int] | None] = [None] * 20 + [(12 * k, 80) for k in range(25)]
    results = _run(analyzer, _frames(person, places), batch=8)
    first_seen = next(r.number for r in results if r.faces)
    settings = TrackingSettings()
    assert 20 <= first_seen <= 20 + settings.detect_every_s * FPS
    # Once a face is tracked the camera is detected on the cadence again.
    later = [n for n in _detected(results) if n >= first_seen]
    assert max(b - a for a, b in itertools.pairwise(later)) <= settings.detect_interval


def test_a_still_face_in_view_keeps_the_cadence(analyzer: FaceAnalyzer, person: NDArray[np.uint8]) -> None:
    results = _run(analyzer, _frames(person, [(180, 70)] * 45), batch=8)
    detected = _detected(results)
    assert all(b - a <= TrackingSettings().detect_interval for a, b in itertools.pairwise(detected))
    assert all(r.faces for r in results)


def test_what_is_detected_does_not_depend_on_the_batching(analyzer: FaceAnalyzer, person: NDArray[np.uint8]) -> None:
    # Empty, a person comes in and stands, leaves, empty again: every rule of the plan is used.
    places: list[tuple[int, int] | None] = (
        [None] * 12 + [(15 * k, 70) for k in range(12)] + [(180, 70)] * 15 + [None] * 25
    )
    frames = _frames(person, places)
    runs = [_run(analyzer, frames, batch) for batch in (1, 5, 16, len(frames))]
    plans = [[(r.number, r.detected, r.reset, [f.face_id for f in r.faces]) for r in run] for run in runs]
    assert all(plan == plans[0] for plan in plans[1:])
    assert sum(r.detected for r in runs[0]) < len(frames) / 4  # the empty stretches were mostly skipped
