"""Frames in, faces out: detect, align, gate on quality and embed, batched across frames."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from models.align import align_faces
from models.detection import Detections, FaceDetector
from models.embedder import FaceEmbedder
from models.quality import QualityReport, assess
from models.registry import ModelTask, resolve_model
from models.session import OrtSessionFactory, SessionFactory
from models.settings import ModelSettings


@dataclass(frozen=True)
class AnalyzedFace:
    index: int  # position among the frame's detections, highest score first
    box: NDArray[np.float32]
    score: float
    landmarks: NDArray[np.float32]
    quality: QualityReport
    crop: NDArray[np.uint8]  # aligned 112x112 BGR
    embedding: NDArray[np.float32] | None  # None when the quality gate rejected the face


@dataclass
class StageTimings:
    """Wall-clock seconds spent per stage over an analyzer's life (callers count what they keep)."""

    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    #: Called with (stage, seconds) after each stage, e.g. to feed a latency histogram.
    observer: Callable[[str, float], None] | None = None

    def add(self, name: str, seconds: float) -> None:
        """Counts ``seconds`` to a stage timed by its caller."""
        self.seconds[name] += seconds
        if self.observer is not None:
            self.observer(name, seconds)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] += elapsed
            if self.observer is not None:
                self.observer(name, elapsed)


class FaceAnalyzer:
    def __init__(self, detector: FaceDetector, embedder: FaceEmbedder, settings: ModelSettings) -> None:
        self.detector = detector
        self.embedder = embedder
        self.settings = settings
        self.timings = StageTimings()

    @classmethod
    def from_settings(cls, settings: ModelSettings, session_factory: SessionFactory | None = None) -> FaceAnalyzer:
        runtime = settings.runtime
        factory = session_factory or OrtSessionFactory(
            runtime.providers, runtime.intra_op_threads, runtime.inter_op_threads, runtime.spin_wait
        )
        det = resolve_model(settings.detector.model, ModelTask.DETECTOR, runtime.cache_dir, settings.detector.sha256)
        emb = resolve_model(settings.embedder.model, ModelTask.EMBEDDER, runtime.cache_dir, settings.embedder.sha256)
        return cls(
            FaceDetector(det.path, factory, settings.detector),
            FaceEmbedder(emb.path, factory, settings.embedder),
            settings,
        )

    def describe(self, image: NDArray[np.uint8], found: Detections) -> tuple[NDArray[np.uint8], list[QualityReport]]:
        """The aligned crops of an image's detections and the quality gate's report on each."""
        with self.timings.stage("align"):
            crops = align_faces(image, found.landmarks)
            reports = [
                assess(found.boxes[i], float(found.scores[i]), found.landmarks[i], crops[i], self.settings.quality)
                for i in range(len(found))
            ]
        return crops, reports

    def analyze(self, images: Sequence[NDArray[np.uint8]]) -> list[list[AnalyzedFace]]:
        """Faces of each BGR image, embedded when they pass the quality gate."""
        with self.timings.stage("detect"):
            detections = self.detector.detect(images)
        crops: list[NDArray[np.uint8]] = []
        reports: list[list[QualityReport]] = []
        for image, found in zip(images, detections, strict=True):
            aligned, assessed = self.describe(image, found)
            crops.append(aligned)
            reports.append(assessed)
        accepted = [c[[r.accepted for r in rs]] for c, rs in zip(crops, reports, strict=True) if len(rs)]
        with self.timings.stage("embed"):
            vectors = self.embedder.embed(np.concatenate(accepted)) if accepted else np.zeros((0, 1), np.float32)
        results: list[list[AnalyzedFace]] = []
        next_vector = 0
        for found, aligned, frame_reports in zip(detections, crops, reports, strict=True):
            faces = []
            for i, report in enumerate(frame_reports):
                embedding = None
                if report.accepted:
                    embedding = vectors[next_vector]
                    next_vector += 1
                faces.append(
                    AnalyzedFace(
                        i,
                        found.boxes[i],
                        float(found.scores[i]),
                        found.landmarks[i],
                        report,
                        aligned[i],
                        embedding,
                    )
                )
            results.append(faces)
        return results


def largest_accepted(faces: Sequence[AnalyzedFace]) -> AnalyzedFace | None:
    """The largest face that passed the quality gate: the person a photo used as a query is of."""
    accepted = [face for face in faces if face.embedding is not None]
    if not accepted:
        return None
    return max(accepted, key=lambda face: float((face.box[2] - face.box[0]) * (face.box[3] - face.box[1])))
