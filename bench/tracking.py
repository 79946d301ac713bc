"""Tracking on against tracking off, per clip: same identities? how much less work, how many fewer messages?

Both runs go through the same pipeline and clustering in this process. Faces are matched between the runs
by frame and box (IoU >= 0.5); over the matched faces that both runs put in a cluster, BCubed F compares the
two clusterings (1.0: the same partition of those faces), and ">=20" counts the clusters holding 20 or more
of them in each run (a person split into pieces shows as more such clusters with tracking on). "emb/app" is
the mean number of embedded faces per appearance (track), "1-emb" the appearances resting on one, "det on" the
share of frames the detector ran on with tracking on. Identity
messages are what the identities topic carries with the defaults: tracking off, one assignment per
clustered face plus merges; tracking on, one per embedded face plus merges and one appearance per track
with a clustered face.

    uv run python -m bench.tracking [--videos DIR] [--clips NAME...] [--scale 0.5] [--every 2]

``--scale`` and ``--every`` make each clip a poorer camera (smaller faces, fewer frames a second): where
tracking is put to the test on clips that are easy at their own size and rate.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from bench.common import DATA, require
from clustering.engine import OnlineRankOrder
from clustering.scores import score_clustering
from models.analyzer import FaceAnalyzer
from models.pipeline import FacePipeline
from models.settings import RuntimeSettings
from models.track_log import TrackSummary
from models.tracker import iou_matrix
from streaming.sources import Frame, FrameSource
from workers.plumbing.faces import TrackedFaces
from workers.plumbing.frames import camera_frame
from workers.settings import Settings


@dataclass
class TrackingRun:
    seconds: float
    faces: dict[int, list[tuple[NDArray[np.float32], int | None]]]  # frame -> (box, final cluster)
    clusters: int
    messages: int
    detected_frames: int
    embedded: int
    #: Embedded faces of each appearance (tracking on; none off).
    appearance_embeddings: list[int]


BIG = 20


def run(frames: list[Frame], analyzer: FaceAnalyzer, tracking: bool) -> TrackingRun:
    settings = Settings()  # FACESTREAM_TRACKING__... variables apply, to try other settings
    settings = settings.model_copy(update={"tracking": settings.tracking.model_copy(update={"enabled": tracking})})
    pipeline = FacePipeline(analyzer, settings.tracking)
    engine = OnlineRankOrder(analyzer.embedder.dimension, settings.clustering)
    tracked = TrackedFaces(engine)
    placed: list[tuple[int, NDArray[np.float32], str | None]] = []  # frame, box, anchor face
    messages = 0
    started = time.perf_counter()
    results = []
    summaries: list[TrackSummary] = []
    for start in range(0, len(frames), settings.run.batch_size):
        batch = frames[start : start + settings.run.batch_size]
        results += pipeline.process([camera_frame(frame) for frame in batch])
    for result in [*results]:
        for face in result.faces:
            anchor, assignment = tracked.place(face)
            messages += 0 if assignment is None else 1 + len(assignment.merges)
            placed.append((face.frame, face.box, anchor))
        messages += sum(1 for a in result.appearances if a.track in tracked.anchors)
        summaries += result.appearances
    ended = pipeline.finish()
    messages += sum(1 for a in ended if a.track in tracked.anchors)
    summaries += ended
    seconds = time.perf_counter() - started
    labels = engine.labels()
    faces: dict[int, list[tuple[NDArray[np.float32], int | None]]] = {}
    for frame, box, anchor in placed:
        faces.setdefault(frame, []).append((box, None if anchor is None else labels[anchor]))
    counters = pipeline.counters
    embedded = [a.embedded for a in summaries if a.faces]
    return TrackingRun(
        seconds, faces, len(set(labels.values())), messages, counters.detected_frames, counters.embedded, embedded
    )


@dataclass
class Agreement:
    """Tracking on against off over the faces both put in a cluster (matched by frame and box)."""

    bcubed_f: float
    matched: int
    #: Clusters with at least BIG of the matched faces, in the run with tracking off and on.
    big_off: int
    big_on: int


def agreement(on: TrackingRun, off: TrackingRun) -> Agreement:
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
        return Agreement(float("nan"), 0, 0, 0)
    big_off = sum(size >= BIG for size in Counter(truth).values())
    big_on = sum(size >= BIG for size in Counter(predicted).values())
    return Agreement(score_clustering(truth, predicted).bcubed_f, len(truth), big_off, big_on)


def resized(image: NDArray[np.uint8], scale: float) -> NDArray[np.uint8]:
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, default=DATA / "videos")
    parser.add_argument("--clips", nargs="*", default=[], help="only these clips (file names)")
    parser.add_argument("--scale", type=float, default=1.0, help="frames resized by this factor (a poorer camera)")
    parser.add_argument("--every", type=int, default=1, help="one frame in this many (a lower frame rate)")
    args = parser.parse_args()
    # FACESTREAM_MODELS__... variables apply too (the embedder's flip, another model), on the CPU.
    models = Settings().models.model_copy(update={"runtime": RuntimeSettings(providers=("CPUExecutionProvider",))})
    analyzer = FaceAnalyzer.from_settings(models)
    print(
        f"{'clip':<46} {'s off':>6} {'s on':>6} {'speed':>6} {'BCubed F':>8} {'matched':>7} "
        f"{'clusters off/on':>15} {f'>={BIG} off/on':>13} {'emb/app':>7} {'1-emb':>5} {'msgs/min off':>12} "
        f"{'on':>6} {'fewer':>6} {'det on':>6}"
    )
    for video in sorted(require(args.videos).glob("*.mp4")):
        if args.clips and video.name not in args.clips:
            continue
        frames = [f for f in FrameSource(str(video)) if isinstance(f, Frame)][:: args.every]
        if args.scale != 1.0:
            frames = [replace(f, image=resized(f.image, args.scale)) for f in frames]
        minutes = max(frames[-1].timestamp - frames[0].timestamp, 1e-3) / 60
        off = run(frames, analyzer, tracking=False)
        on = run(frames, analyzer, tracking=True)
        agreed = agreement(on, off)
        per_appearance = float(np.mean(on.appearance_embeddings)) if on.appearance_embeddings else float("nan")
        print(
            f"{video.name:<46} {off.seconds:>6.2f} {on.seconds:>6.2f} {off.seconds / on.seconds:>5.1f}x "
            f"{agreed.bcubed_f:>8.4f} {agreed.matched:>7} {off.clusters:>7}/{on.clusters:<7} "
            f"{agreed.big_off:>6}/{agreed.big_on:<6} "
            f"{per_appearance:>7.2f} {on.appearance_embeddings.count(1):>5} {off.messages / minutes:>12.0f} "
            f"{on.messages / minutes:>6.0f} {off.messages / max(on.messages, 1):>5.1f}x "
            f"{on.detected_frames / len(frames):>6.0%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
