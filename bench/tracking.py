"""Tracking on against tracking off, per clip: same identities? how much less work, how many fewer messages?

Both runs go through the same pipeline and clustering in this process. Faces are matched between the runs
by frame and box (IoU >= 0.5); over the matched faces that both runs put in a cluster, BCubed F compares the
two clusterings (1.0: the same partition of those faces). Identity messages are what the identities topic
carries with the defaults: tracking off, one assignment per clustered face plus merges; tracking on, one per
embedded face plus merges and one appearance per track with a clustered face.

    uv run python -m bench.tracking [--videos DIR]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench.common import DATA, require
from clustering.engine import OnlineRankOrder
from clustering.metrics import score_clustering
from models.analyzer import FaceAnalyzer
from models.frames import CameraFrame
from models.pipeline import FacePipeline
from models.settings import ModelSettings, RuntimeSettings
from models.tracker import iou_matrix
from streaming.sources import Frame, FrameSource
from workers.faces import apply_face, face_record
from workers.settings import Settings


@dataclass
class TrackingRun:
    seconds: float
    faces: dict[int, list[tuple[NDArray[np.float32], int | None]]]  # frame -> (box, final cluster)
    clusters: int
    messages: int
    detected_frames: int
    embedded: int


def run(frames: list[Frame], analyzer: FaceAnalyzer, tracking: bool) -> TrackingRun:
    settings = Settings()  # FACESTREAM_TRACKING__... variables apply, to try other settings
    settings = settings.model_copy(update={"tracking": settings.tracking.model_copy(update={"enabled": tracking})})
    pipeline = FacePipeline(analyzer, settings.tracking)
    engine = OnlineRankOrder(analyzer.embedder.dimension, settings.clustering)
    anchors: dict[str, str] = {}
    placed: list[tuple[int, NDArray[np.float32], str | None]] = []  # frame, box, anchor face
    messages = 0
    started = time.perf_counter()
    results = []
    for start in range(0, len(frames), settings.run.batch_size):
        batch = frames[start : start + settings.run.batch_size]
        results += pipeline.process([CameraFrame(f.source, f.number, f.timestamp, f.image) for f in batch])
    for result in [*results]:
        for face in result.faces:
            anchor = anchors.get(face.track) if face.track else None
            if face.embedding is not None:
                record = face_record(face, space="default", model="bench", dimension=512)
                messages += 1 + len(apply_face(engine, record, face.embedding).merges)
                anchor = face.face_id
                if face.track:
                    anchors[face.track] = anchor
            placed.append((face.frame, face.box, anchor))
        messages += sum(1 for a in result.appearances if a.track in anchors)
    messages += sum(1 for a in pipeline.finish() if a.track in anchors)
    seconds = time.perf_counter() - started
    labels = engine.labels()
    faces: dict[int, list[tuple[NDArray[np.float32], int | None]]] = {}
    for frame, box, anchor in placed:
        faces.setdefault(frame, []).append((box, None if anchor is None else labels[anchor]))
    counters = pipeline.counters
    return TrackingRun(seconds, faces, len(set(labels.values())), messages, counters.detected_frames, counters.embedded)


def agreement(on: TrackingRun, off: TrackingRun) -> tuple[float, int]:
    """BCubed F of tracking on against off over the faces both put in a cluster, and how many those are."""
    truth: list[int] = []
    predicted: list[int] = []
    for frame, faces_off in off.faces.items():
        faces_on = on.faces.get(frame, [])
        if not faces_on:
            continue
        overlap = iou_matrix(np.stack([b for b, _ in faces_off]), np.stack([b for b, _ in faces_on]))
        for i, j in zip(*np.nonzero(overlap >= 0.5), strict=True):
            cluster_off, cluster_on = faces_off[i][1], faces_on[j][1]
            if cluster_off is not None and cluster_on is not None:
                truth.append(cluster_off)
                predicted.append(cluster_on)
    if not truth:
        return float("nan"), 0
    return score_clustering(truth, predicted).bcubed_f, len(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=DATA / "videos")
    args = parser.parse_args()
    analyzer = FaceAnalyzer.from_settings(ModelSettings(runtime=RuntimeSettings(providers=("CPUExecutionProvider",))))
    print(
        f"{'clip':<46} {'s off':>6} {'s on':>6} {'speed':>6} {'BCubed F':>8} {'matched':>7} "
        f"{'clusters off/on':>15} {'msgs/min off':>12} {'on':>6} {'fewer':>6}"
    )
    for video in sorted(require(args.videos).glob("*.mp4")):
        frames = [f for f in FrameSource(str(video)) if isinstance(f, Frame)]
        minutes = max(frames[-1].timestamp - frames[0].timestamp, 1e-3) / 60
        off = run(frames, analyzer, tracking=False)
        on = run(frames, analyzer, tracking=True)
        f, matched = agreement(on, off)
        print(
            f"{video.name:<46} {off.seconds:>6.2f} {on.seconds:>6.2f} {off.seconds / on.seconds:>5.1f}x "
            f"{f:>8.4f} {matched:>7} {off.clusters:>7}/{on.clusters:<7} {off.messages / minutes:>12.0f} "
            f"{on.messages / minutes:>6.0f} {off.messages / max(on.messages, 1):>5.1f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
