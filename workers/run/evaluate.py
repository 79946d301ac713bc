"""`facestream eval`: cluster a folder of labeled faces and score the result against the labels.

DIR holds identity/image files. One face per image (the most central of the large ones) is embedded; the
embeddings can be cached in a file so that clustering alone is re-evaluated in seconds.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from clustering.cosine import cosine_components
from clustering.engine import OnlineRankOrder
from clustering.rank_order import batch_rank_order
from clustering.scores import ClusteringScores, score_clustering
from clustering.settings import ClusteringSettings
from models.align import align_faces
from models.analyzer import FaceAnalyzer
from models.detection import Detections
from streaming.decode import ImageDecodeError, decode_image
from streaming.sources import folder_images
from workers.settings import Settings

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


@dataclass(frozen=True)
class LabeledImage:
    identity: str
    path: Path


def labeled_images(root: Path) -> list[LabeledImage]:
    """Images of ``root/<identity>/...``, in a stable order."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of identity folders")
    images = [
        LabeledImage(path.relative_to(root).parts[0], path)
        for path in folder_images(root)
        if len(path.relative_to(root).parts) >= 2
    ]
    if not images:
        raise ValueError(f"{root} holds no identity/image files")
    return images


def primary_face(found: Detections, height: int, width: int) -> int | None:
    """The face a labeled photo is about: large and near the centre (insightface's rule)."""
    if len(found) == 0:
        return None
    boxes = found.boxes
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 - width / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 - height / 2
    return int(np.argmax(area - 2.0 * (centre_x**2 + centre_y**2)))


@dataclass
class EmbeddedSet:
    paths: list[str]
    labels: list[str]
    embeddings: NDArray[np.float32]  # one row per image with a face
    has_face: NDArray[np.bool_]  # per path
    model_key: str
    seconds: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def face_labels(self) -> list[str]:
        return [label for label, ok in zip(self.labels, self.has_face, strict=True) if ok]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.savez_compressed(
                handle,
                format=np.array(CACHE_FORMAT),
                paths=np.array(self.paths),
                labels=np.array(self.labels),
                embeddings=self.embeddings,
                has_face=self.has_face,
                model_key=np.array(self.model_key),
            )

    @staticmethod
    def load(path: Path) -> EmbeddedSet:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) != CACHE_FORMAT:
                raise ValueError(f"{path}: embeddings cache format {int(data['format'])}, expected {CACHE_FORMAT}")
            return EmbeddedSet(
                [str(p) for p in data["paths"]],
                [str(x) for x in data["labels"]],
                data["embeddings"].astype(np.float32),
                data["has_face"].astype(bool),
                str(data["model_key"]),
            )


def model_key(settings: Settings) -> str:
    """What the embeddings depend on; a cache made with anything else is not reused."""
    m = settings.models
    d = m.detector
    flip = "|flip" if m.embedder.flip else ""
    return f"{d.model}|{d.input_size}|{d.max_upscale}|{d.score_threshold}|{m.embedder.model}{flip}"


def embed_dataset(
    images: Sequence[LabeledImage], analyzer: FaceAnalyzer, settings: Settings, progress: bool = True
) -> EmbeddedSet:
    started = time.perf_counter()
    failures: Counter[str] = Counter()
    has_face = np.zeros(len(images), bool)
    crops = []
    step = settings.run.batch_size
    for start in tqdm(range(0, len(images), step), unit="batch", disable=not progress, dynamic_ncols=True):
        decoded: list[tuple[int, NDArray[np.uint8]]] = []
        for offset, item in enumerate(images[start : start + step]):
            try:
                decoded.append((start + offset, decode_image(item.path.read_bytes(), settings.run.max_pixels)))
            except ImageDecodeError as exc:
                failures[exc.reason.value] += 1
                log.warning("skipped %s: %s", item.path, exc)
        detections = analyzer.detector.detect([image for _, image in decoded])
        for (index, image), found in zip(decoded, detections, strict=True):
            face = primary_face(found, image.shape[0], image.shape[1])
            if face is None:
                failures["no_face"] += 1
                continue
            has_face[index] = True
            crops.append(align_faces(image, found.landmarks[face : face + 1])[0])
    embeddings = (
        analyzer.embedder.embed(np.stack(crops)) if crops else np.zeros((0, analyzer.embedder.dimension), np.float32)
    )
    return EmbeddedSet(
        [str(i.path) for i in images],
        [i.identity for i in images],
        embeddings,
        has_face,
        model_key(settings),
        time.perf_counter() - started,
        failures,
    )


def online_labels(embeddings: NDArray[np.float32], settings: ClusteringSettings, seed: int | None) -> NDArray[np.int64]:
    """Labels from the online engine, faces arriving in a shuffled order (or as listed for None)."""
    order = list(range(len(embeddings)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    engine = OnlineRankOrder(embeddings.shape[1], settings)
    for i in order:
        engine.add(str(i), embeddings[i])
    return np.asarray([engine.cluster_of(str(i)) for i in range(len(embeddings))], np.int64)


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    images: int
    identities: int
    embedded: int
    failures: dict[str, int]
    seconds: float
    from_cache: bool
    threshold: float
    seed: int | None
    results: dict[str, ClusteringScores]
    sweep: list[tuple[float, ClusteringScores]]

    @property
    def faces_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds and not self.from_cache else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "images": self.images,
            "identities": self.identities,
            "embedded": self.embedded,
            "failures": self.failures,
            "embedding_seconds": round(self.seconds, 2),
            "faces_per_second": round(self.faces_per_second, 2),
            "embeddings_from_cache": self.from_cache,
            "threshold": self.threshold,
            "seed": self.seed,
            "results": {name: s.as_dict() for name, s in self.results.items()},
            "sweep": [{"threshold": t, **s.as_dict()} for t, s in self.sweep],
        }

    def table(self) -> str:
        columns = [
            ("pairwise P", "pairwise_precision"),
            ("pairwise R", "pairwise_recall"),
            ("pairwise F", "pairwise_f"),
            ("BCubed P", "bcubed_precision"),
            ("BCubed R", "bcubed_recall"),
            ("BCubed F", "bcubed_f"),
            ("NMI", "nmi"),
            ("purity", "purity"),
            ("Rand", "rand_index"),
        ]
        fails = ", ".join(f"{n} {why}" for why, n in sorted(self.failures.items())) or "none"
        speed = "cached embeddings" if self.from_cache else f"{self.faces_per_second:.1f} faces/s"
        lines = [
            f"{self.dataset}: {self.images} images of {self.identities} identities; {self.embedded} faces embedded "
            f"(not embedded: {fails}); {speed}",
            f"{'method':<32}{'clusters':>9}" + "".join(f"{label:>12}" for label, _ in columns),
        ]
        rows = [(name, s) for name, s in self.results.items()] + [
            (f"cosine components t={t:.2f}", s) for t, s in self.sweep
        ]
        for name, scores in rows:
            values = scores.as_dict()
            lines.append(
                f"{name:<32}{scores.predicted_clusters:>9}" + "".join(f"{values[key]:>12.4f}" for _, key in columns)
            )
        return "\n".join(lines)


def embedded_dataset(
    root: Path, settings: Settings, cache: Path | None, analyzer: FaceAnalyzer | None = None, progress: bool = True
) -> tuple[EmbeddedSet, bool]:
    """The embeddings of a labeled folder: from ``cache`` when it was made for the same images and models,
    else computed (and saved there). Also returns whether they came from the cache."""
    images = labeled_images(root)
    if cache is not None and cache.is_file():
        candidate = EmbeddedSet.load(cache)
        if candidate.paths == [str(i.path) for i in images] and candidate.model_key == model_key(settings):
            return candidate, True
        log.warning("%s was made for other images or models; embedding again", cache)
    embedded = embed_dataset(images, analyzer or FaceAnalyzer.from_settings(settings.models), settings, progress)
    if cache is not None:
        embedded.save(cache)
    return embedded, False


def evaluate(
    root: Path,
    settings: Settings,
    *,
    cache: Path | None = None,
    seed: int | None = 0,
    seeds: Sequence[int] = (),
    sweep: Sequence[float] = (),
    analyzer: FaceAnalyzer | None = None,
    progress: bool = True,
) -> EvalReport:
    embedded, from_cache = embedded_dataset(root, settings, cache, analyzer, progress)
    truth = embedded.face_labels
    if not truth:
        raise ValueError(f"no face was found in any image of {root}")
    threshold = settings.clustering.cosine_threshold
    vectors = embedded.embeddings
    results = {
        "online rank-order": score_clustering(truth, online_labels(vectors, settings.clustering, seed).tolist()),
        "batch rank-order": score_clustering(truth, batch_rank_order(vectors, settings.clustering.rank_order).tolist()),
        f"cosine components t={threshold:.2f}": score_clustering(truth, cosine_components(vectors, threshold).tolist()),
    }
    for extra in seeds:
        results[f"online rank-order seed {extra}"] = score_clustering(
            truth, online_labels(vectors, settings.clustering, extra).tolist()
        )
    swept = [(t, score_clustering(truth, cosine_components(embedded.embeddings, t).tolist())) for t in sweep]
    failures = dict(embedded.failures)
    if from_cache:
        failures = {"no_face": int((~embedded.has_face).sum())} if (~embedded.has_face).any() else {}
    return EvalReport(
        dataset=str(root),
        images=len(embedded.paths),
        identities=len(set(embedded.labels)),
        embedded=len(truth),
        failures=failures,
        seconds=embedded.seconds,
        from_cache=from_cache,
        threshold=threshold,
        seed=seed,
        results=results,
        sweep=swept,
    )
