"""A track is evidence, not one sample: a young track is embedded a few times, its faces carry the track's
template, and on a poorer camera (the TV clip at half size, where one embedding a track split a person) the
tracked run clusters the faces as the untracked one does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from bench.tracking import agreement, resized, run
from models.analyzer import FaceAnalyzer
from models.frames import FaceObservation, FrameResult
from models.pipeline import FacePipeline
from models.quality import QualityReport
from models.settings import TrackingSettings
from models.track_log import TrackLog, face_quality
from streaming.sources import Frame, FrameSource
from tests.clips import clip_frames, run_frames
from tests.conftest import data_dir


def _report(score: float = 0.9) -> QualityReport:
    return QualityReport(face_size=80.0, score=score, sharpness=50.0, yaw=0.1, rejection=None)


def test_a_young_track_is_embedded_a_few_times_then_every_interval() -> None:
    settings = TrackingSettings(first_embeddings=3, embed_interval_s=2.0)
    log = TrackLog("cam", "cam:t0.0", 0, 0.0)
    box = np.zeros(4, np.float32)
    embedded = [t for t in np.arange(0.0, 5.0, 0.25) if log.embed_now(_report(), float(t), f"f{t}", box, settings)]
    assert embedded == [0.0, 0.25, 0.5, 2.5, 4.5]
    # A long track's next stretch keeps counting: its first faces are not embedded again at once.
    stretch = log.next_stretch()
    assert not stretch.embed_now(_report(), 4.75, "f", box, settings)


def test_a_tracked_face_carries_its_tracks_template(analyzer: FaceAnalyzer) -> None:
    frames = clip_frames("intel_head-pose-face-detection-male.mp4", "cam")
    own = _embedded(run_frames(FacePipeline(analyzer, TrackingSettings(track_template=False)), frames))
    templated = _embedded(run_frames(FacePipeline(analyzer, TrackingSettings()), frames))
    assert [f.face_id for f in own] == [f.face_id for f in templated]
    assert len(own) >= 3
    sums: dict[str | None, NDArray[np.float32]] = {}
    for raw, carried in zip(own, templated, strict=True):
        assert raw.quality is not None
        assert raw.embedding is not None
        weighted = raw.embedding * np.float32(face_quality(raw.quality))
        sums[raw.track] = weighted if raw.track not in sums else sums[raw.track] + weighted
        expected = sums[raw.track] / np.linalg.norm(sums[raw.track])
        assert carried.embedding is not None
        np.testing.assert_allclose(carried.embedding, expected, atol=1e-5)


def _embedded(results: list[FrameResult]) -> list[FaceObservation]:
    return [face for result in results for face in result.faces if face.embedding is not None]


def test_on_a_poorer_camera_a_person_in_video_is_still_one_identity(analyzer: FaceAnalyzer) -> None:
    """The TV clip (six people, cuts) at half size: with one embedding a track, pieces of one person stayed
    apart (BCubed F 0.88 against tracking off, one cluster of 20 faces more)."""
    source = FrameSource(str(data_dir("videos", "short_hamilton_clip.mp4")))
    frames = [replace(f, image=resized(f.image, 0.5)) for f in source if isinstance(f, Frame)]
    off, on = run(frames, analyzer, tracking=False), run(frames, analyzer, tracking=True)
    agreed = agreement(on, off)
    assert agreed.matched > 200
    assert agreed.bcubed_f >= 0.98
    assert agreed.big_on <= agreed.big_off
    assert on.embedded * 4 < off.embedded  # still a fraction of the work
