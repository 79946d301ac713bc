"""Tracks: faces followed through a camera's frames, ended at cuts, crossings and bad frames; tracks into clustering."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from numpy.typing import NDArray

from clustering.engine import OnlineRankOrder
from clustering.settings import ClusteringSettings
from clustering.store import InMemoryStore
from models.analyzer import FaceAnalyzer
from models.frames import CameraFrame, TrackReset
from models.pipeline import FacePipeline
from models.settings import TrackingSettings
from models.tracker import FaceTracker, TrackerParams
from tests.clips import clip_frames, run_frames

LANDMARKS = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)


def _faces(centres: list[tuple[float, float]], size: float = 60.0) -> tuple[NDArray[np.float32], ...]:
    boxes = np.array([[x - size / 2, y - size / 2, x + size / 2, y + size / 2] for x, y in centres], np.float32)
    landmarks = boxes[:, None, :2] + LANDMARKS[None] * size
    return boxes.reshape(-1, 4), np.full(len(centres), 0.9, np.float32), landmarks.astype(np.float32)


def _follow(tracker: FaceTracker, frames: list[list[tuple[float, float]]]) -> list[dict[str, tuple[float, float]]]:
    """Track id -> box centre on each frame (a detection every frame)."""
    seen = []
    for number, centres in enumerate(frames):
        tracker.predict()
        boxes, scores, landmarks = _faces(centres)
        tracker.update(boxes, scores, landmarks, [f"cam:t{number}.{i}" for i in range(len(centres))])
        seen.append(
            {
                t.id: ((float(t.box()[0]) + float(t.box()[2])) / 2, float(t.box()[1] + t.box()[3]) / 2)
                for t in tracker.visible()
            }
        )
    return seen


def test_two_walking_faces_keep_their_tracks() -> None:
    frames = [[(100.0 + 4 * n, 200.0), (500.0 - 3 * n, 420.0)] for n in range(60)]
    seen = _follow(FaceTracker(TrackerParams()), frames)
    assert set(seen[-1]) == {"cam:t0.0", "cam:t0.1"}
    assert seen[-1]["cam:t0.0"][0] == pytest.approx(100 + 4 * 59, abs=3)


def test_a_face_that_jumps_starts_a_new_track() -> None:
    frames = [[(100.0 + 2 * n, 200.0)] for n in range(10)] + [[(600.0, 400.0)] for _ in range(5)]
    seen = _follow(FaceTracker(TrackerParams()), frames)
    assert list(seen[9]) == ["cam:t0.0"]
    assert list(seen[-1]) == ["cam:t10.0"]


def test_two_crossing_faces_never_share_a_track() -> None:
    # Two faces walking towards each other along one line, crossing in the middle.
    frames = [[(100.0 + 10 * n, 200.0), (600.0 - 10 * n, 200.0)] for n in range(50)]
    seen = _follow(FaceTracker(TrackerParams()), frames)
    positions: dict[str, list[tuple[int, float]]] = {}
    for number, tracks in enumerate(seen):
        for track, (x, _) in tracks.items():
            positions.setdefault(track, []).append((number, x))
    for track, points in positions.items():
        # Every box of a track lies on one person's path: never half on one and half on the other.
        on_first = [abs(x - (100 + 10 * n)) < 15 for n, x in points]
        on_second = [abs(x - (600 - 10 * n)) < 15 for n, x in points]
        assert all(a or b for a, b in zip(on_first, on_second, strict=True)), track
        assert all(on_first) or all(on_second), f"{track} moved from one face to the other"


def test_a_real_clip_is_a_few_long_tracks(analyzer: FaceAnalyzer) -> None:
    pipeline = FacePipeline(analyzer, TrackingSettings())
    results = run_frames(pipeline, clip_frames("intel_head-pose-face-detection-male.mp4", "cam"))
    faces = [f for r in results for f in r.faces]
    tracks = {f.track for f in faces}
    assert len(faces) > 50
    assert len(tracks) <= 3  # one man turning his head: one track, perhaps broken once or twice
    counters = pipeline.counters
    assert counters.detected_frames < counters.frames / 2  # the tracker carries the others
    assert 0 < counters.embedded < len(faces) / 5
    longest = max(sum(f.track == t for f in faces) for t in tracks)
    assert longest > 40


def test_a_cut_between_two_clips_ends_every_track(analyzer: FaceAnalyzer) -> None:
    first = clip_frames("intel_head-pose-face-detection-female.mp4", "cam")
    second = clip_frames(
        "intel_head-pose-face-detection-male.mp4", "cam", first=len(first), start_s=first[-1].timestamp
    )
    pipeline = FacePipeline(analyzer, TrackingSettings())
    results = run_frames(pipeline, first + second)
    assert results[len(first)].reset == TrackReset.CUT
    before = {f.track for r in results[: len(first)] for f in r.faces}
    after = {f.track for r in results[len(first) :] for f in r.faces}
    assert before
    assert after
    assert before.isdisjoint(after)
    ended = [a for r in results[len(first) : len(first) + 1] for a in r.appearances]
    assert {a.track for a in ended} == {f.track for f in results[len(first) - 1].faces}


def test_bad_frames_start_new_tracks_with_a_reason(analyzer: FaceAnalyzer) -> None:
    frames = clip_frames("intel_head-pose-face-detection-male.mp4", "cam")[:20]
    small = frames[10].image[::2, ::2].copy()
    frames[10] = CameraFrame.decoded("cam", frames[10].number, frames[10].timestamp, small)  # another size mid-track
    frames[15] = replace(frames[15], number=3)  # the frame number goes back
    pipeline = FacePipeline(analyzer, TrackingSettings())
    results = run_frames(pipeline, frames)
    assert results[10].reset == TrackReset.FRAME_SIZE
    assert results[11].reset == TrackReset.FRAME_SIZE
    assert results[15].reset == TrackReset.FRAME_ORDER
    assert pipeline.counters.resets == {"frame_size": 2, "frame_order": 1}


def test_a_new_session_ends_every_track_and_its_ids_never_repeat_the_old_ones(analyzer: FaceAnalyzer) -> None:
    """A producer that reconnects numbers its frames from 0 again in a new session: the same frame numbers, the
    same picture even, give faces and tracks of their own, and no track spans the two sessions."""
    clip = clip_frames("intel_head-pose-face-detection-male.mp4", "door")[:12]
    first = [replace(frame, session="aaaa") for frame in clip]
    again = [replace(frame, session="bbbb") for frame in clip]
    pipeline = FacePipeline(analyzer, TrackingSettings())
    results = run_frames(pipeline, first + again)
    assert results[len(first)].reset == TrackReset.SESSION
    ended = {a.track for a in results[len(first)].appearances}
    assert ended == {f.track for f in results[len(first) - 1].faces}
    ids = [{f.face_id for f in r.faces} | {str(f.track) for f in r.faces} for r in results]
    before, after = set().union(*ids[: len(first)]), set().union(*ids[len(first) :])
    assert before
    assert after
    assert before.isdisjoint(after)
    assert all(i.startswith("door@aaaa:") for i in before)
    assert all(i.startswith("door@bbbb:") for i in after)


def test_tracking_off_embeds_every_accepted_face(analyzer: FaceAnalyzer) -> None:
    frames = clip_frames("intel_head-pose-face-detection-male.mp4", "cam")[:16]
    results = run_frames(FacePipeline(analyzer, TrackingSettings(enabled=False)), frames)
    faces = [f for r in results for f in r.faces]
    assert all(f.track is None and f.detected for f in faces)
    assert all((f.embedding is not None) == (f.quality is not None and f.quality.accepted) for f in faces)
    assert not any(r.appearances for r in results)


def _unit(*hot: int) -> NDArray[np.float32]:
    vector = np.zeros(64, np.float32)
    vector[list(hot)] = 1.0
    return vector / np.linalg.norm(vector)


def test_a_track_is_one_identity_even_where_faces_look_unlike() -> None:
    engine = OnlineRankOrder(64, ClusteringSettings(), InMemoryStore())
    engine.add("cam:1:0", _unit(0), camera="cam", frame=1, track="cam:t1.0")
    engine.add("cam:9:0", _unit(1), camera="cam", frame=9, track="cam:t1.0")  # turned away: unlike, same track
    engine.add("cam:9:1", _unit(5), camera="cam", frame=9, track="cam:t9.1")
    assert engine.cluster_of("cam:1:0") == engine.cluster_of("cam:9:0") == engine.track_cluster("cam:t1.0")
    assert engine.cluster_of("cam:9:1") != engine.cluster_of("cam:1:0")


def test_a_cannot_link_splits_a_track_and_its_later_faces_follow_the_new_part() -> None:
    store = InMemoryStore()
    engine = OnlineRankOrder(64, ClusteringSettings(), store)
    engine.add("cam:1:0", _unit(0), camera="cam", frame=1, track="cam:tA")
    engine.add("cam:2:0", _unit(0), camera="cam", frame=2, track="cam:tB")  # same look: joins tA's cluster
    assert engine.track_cluster("cam:tA") == engine.track_cluster("cam:tB")
    # tA now shares a frame with tB, so they are two people: tA's face cannot join the cluster holding tB.
    engine.add("cam:3:1", _unit(7), camera="cam", frame=3, track="cam:tA", cooccurring=["cam:tB"])
    assert engine.cluster_of("cam:3:1") != engine.cluster_of("cam:2:0")
    engine.add("cam:4:0", _unit(8), camera="cam", frame=4, track="cam:tA")
    assert engine.cluster_of("cam:4:0") == engine.cluster_of("cam:3:1") == engine.track_cluster("cam:tA")
    assert engine.refused_links >= 1
    restored = OnlineRankOrder.restore(store, 64, ClusteringSettings())
    assert restored.labels() == engine.labels()
    assert restored.track_cluster("cam:tA") == engine.track_cluster("cam:tA")
    later = restored.add("cam:5:1", _unit(0), camera="cam", frame=5, track="cam:tA", cooccurring=["cam:tB"])
    assert later.cluster_id == engine.cluster_of("cam:3:1")
