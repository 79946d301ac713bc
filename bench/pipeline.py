"""Per-stage latency and throughput of detect -> align -> quality -> embed on this CPU.

For each detector: a one-face-at-a-time baseline (one frame per detector call, one face per embedder call,
the way a naive loop runs insightface, with the same quality gate), then the batched analyzer with 1, 8 and
32 frames per detector call (embedder batches of up to 32 faces). Every configuration runs --repeats times
over the same frames; the figures are medians, and each ratio is against the baseline measured in the same process.

    uv run python -m bench.pipeline [--frames 96] [--repeats 3] [--video PATH]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench.common import DATA, median, video_frames
from models.align import align_face
from models.analyzer import FaceAnalyzer
from models.quality import assess
from models.settings import DetectorSettings, EmbedderSettings, ModelSettings, RuntimeSettings


@dataclass
class Run:
    seconds: float
    faces: int  # detected
    embedded: int
    stages: dict[str, float]


def baseline(analyzer: FaceAnalyzer, frames: list[NDArray[np.uint8]]) -> Run:
    """The same work as the analyzer, quality gate included, one frame and one face at a time."""
    stages = {"detect": 0.0, "align": 0.0, "embed": 0.0}
    faces = embedded = 0
    start = time.perf_counter()
    for frame in frames:
        t0 = time.perf_counter()
        found = analyzer.detector.detect([frame])[0]
        stages["detect"] += time.perf_counter() - t0
        for box, score, landmarks in zip(found.boxes, found.scores, found.landmarks, strict=True):
            t1 = time.perf_counter()
            crop = align_face(frame, landmarks)
            report = assess(box, float(score), landmarks, crop, analyzer.settings.quality)
            t2 = time.perf_counter()
            stages["align"] += t2 - t1
            faces += 1
            if report.accepted:
                analyzer.embedder.embed(crop[None])
                stages["embed"] += time.perf_counter() - t2
                embedded += 1
    return Run(time.perf_counter() - start, faces, embedded, stages)


def batched(analyzer: FaceAnalyzer, frames: list[NDArray[np.uint8]], batch: int) -> Run:
    analyzer.timings.seconds.clear()
    faces = embedded = 0
    start = time.perf_counter()
    for i in range(0, len(frames), batch):
        for found in analyzer.analyze(frames[i : i + batch]):
            faces += len(found)
            embedded += sum(face.embedding is not None for face in found)
    return Run(time.perf_counter() - start, faces, embedded, dict(analyzer.timings.seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(DATA / "videos" / "short_hamilton_clip.mp4"))
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--detectors", nargs="+", default=["scrfd-500m", "retinaface-mnet025"])
    args = parser.parse_args()
    frames = video_frames(Path(args.video), args.frames)
    print(
        f"{len(frames)} frames of {args.video} ({frames[0].shape[1]}x{frames[0].shape[0]}), medians of {args.repeats}"
    )
    print(
        f"{'detector':<20}{'mode':<12}{'frames/s':>10}{'faces/s':>10}{'x base':>8}{'embedded':>10}"
        f"{'detect ms/frame':>17}{'align+quality ms/face':>23}{'embed ms/face':>15}"
    )
    for detector in args.detectors:
        settings = ModelSettings(
            runtime=RuntimeSettings(providers=("CPUExecutionProvider",)),
            detector=DetectorSettings(model=detector),
            embedder=EmbedderSettings(batch_size=32),
        )
        analyzer = FaceAnalyzer.from_settings(settings)
        analyzer.analyze(frames[:2])  # load sessions and warm up
        modes: list[tuple[str, list[Run]]] = [("one-by-one", [baseline(analyzer, frames) for _ in range(args.repeats)])]
        for batch in (1, 8, 32):
            modes.append((f"batch {batch}", [batched(analyzer, frames, batch) for _ in range(args.repeats)]))
        base_rate = median([len(frames) / r.seconds for r in modes[0][1]])
        for name, runs in modes:
            rate = median([len(frames) / r.seconds for r in runs])
            faces = median([r.faces / r.seconds for r in runs])
            detected, embedded = max(runs[0].faces, 1), max(runs[0].embedded, 1)
            detect = median([r.stages.get("detect", 0.0) for r in runs]) / len(frames) * 1000
            align = median([r.stages.get("align", 0.0) for r in runs]) / detected * 1000
            embed = median([r.stages.get("embed", 0.0) for r in runs]) / embedded * 1000
            print(
                f"{detector:<20}{name:<12}{rate:>10.1f}{faces:>10.1f}{rate / base_rate:>8.2f}{runs[0].embedded:>10}"
                f"{detect:>17.2f}{align:>23.3f}{embed:>15.3f}"
            )
    print("faces/s: faces detected per second; 'embedded': faces that passed the quality gate and were embedded.")


if __name__ == "__main__":
    main()
