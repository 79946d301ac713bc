"""`facestream run`: the whole pipeline in one process, no Kafka and no Redis, writing files a person reads.

Outputs in the chosen folder: faces.jsonl (one line per detected face), clusters.json, index.html and the
thumbs/ it shows. Lines of faces.jsonl are written as faces arrive; when the run ends (also on Ctrl-C) the
file is rewritten once with each face's final cluster, since later faces can merge earlier clusters.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import cv2
from tqdm import tqdm

from clustering.engine import OnlineRankOrder
from models.analyzer import AnalyzedFace, FaceAnalyzer
from streaming.messages import face_id
from streaming.sources import BadInput, Frame, FrameSource, SourceItem
from workers.gallery import GalleryCluster, write_gallery
from workers.lifecycle import StopFlag
from workers.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    frames: int = 0
    faces: int = 0
    clustered: int = 0
    clusters: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bad_inputs: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    stopped_early: bool = False

    def line(self, out_dir: Path) -> str:
        rejected = ", ".join(f"{n} {why}" for why, n in sorted(self.rejected.items())) or "none"
        bad = ", ".join(f"{n} {why}" for why, n in sorted(self.bad_inputs.items())) or "none"
        rate = self.faces / self.seconds if self.seconds else 0.0
        state = "stopped early" if self.stopped_early else "done"
        return (
            f"{state}: {self.frames} frames, {self.faces} faces ({self.clustered} clustered; rejected: {rejected}), "
            f"{self.clusters} clusters, bad inputs: {bad}; {self.seconds:.1f} s ({rate:.1f} faces/s) -> {out_dir}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "faces": self.faces,
            "clustered": self.clustered,
            "clusters": self.clusters,
            "rejected": dict(self.rejected),
            "bad_inputs": dict(self.bad_inputs),
            "seconds": round(self.seconds, 3),
            "stopped_early": self.stopped_early,
        }


@dataclass(frozen=True)
class _Seen:
    face_id: str
    source: str
    frame: int
    timestamp: float
    thumbnail: str


def _thumbnail_name(identifier: str) -> str:
    return "thumbs/" + re.sub(r"[^A-Za-z0-9._-]", "_", identifier) + ".jpg"


def _batches(items: Iterable[SourceItem], size: int) -> Iterator[tuple[list[Frame], list[BadInput]]]:
    """Up to ``size`` frames at a time, with the bad inputs met on the way."""
    frames: list[Frame] = []
    bad: list[BadInput] = []
    for item in items:
        if isinstance(item, BadInput):
            bad.append(item)
            continue
        frames.append(item)
        if len(frames) == size:
            yield frames, bad
            frames, bad = [], []
    if frames or bad:
        yield frames, bad


class _FacesFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO = path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        self._handle.flush()

    def finalise(self, clusters: dict[str, int]) -> None:
        """Rewrites every line with its face's final cluster, atomically."""
        self._handle.close()
        partial = self.path.with_suffix(".jsonl.tmp")
        with self.path.open(encoding="utf-8") as src, partial.open("w", encoding="utf-8") as dst:
            for line in src:
                record = json.loads(line)
                if record["cluster"] is not None:
                    record["cluster"] = clusters[record["face_id"]]
                dst.write(json.dumps(record, separators=(",", ":")) + "\n")
        os.replace(partial, self.path)


def _face_record(frame: Frame, face: AnalyzedFace, identifier: str, cluster: int | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "face_id": identifier,
        "source": frame.source,
        "frame": frame.number,
        "timestamp": round(frame.timestamp, 3),
        "box": [round(float(v), 1) for v in face.box],
        "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks],
        "score": round(face.score, 4),
        "quality": {
            "face_size": round(face.quality.face_size, 1),
            "sharpness": round(face.quality.sharpness, 1),
            "yaw": round(face.quality.yaw, 3),
        },
        "rejected": face.quality.rejection.value if face.quality.rejection else None,
        "cluster": cluster,
    }
    if frame.name is not None:
        record["image"] = frame.name
    return record


def run_pipeline(
    sources: Sequence[FrameSource],
    out_dir: Path,
    settings: Settings,
    *,
    analyzer: FaceAnalyzer | None = None,
    stop: StopFlag | None = None,
    progress: bool = True,
) -> RunSummary:
    """Runs every source through the pipeline into ``out_dir``; returns what happened."""
    started = time.perf_counter()
    analyzer = analyzer or FaceAnalyzer.from_settings(settings.models)
    stop = stop or StopFlag()
    (out_dir / "thumbs").mkdir(parents=True, exist_ok=True)
    clustering = OnlineRankOrder(analyzer.embedder.dimension, settings.clustering)
    summary = RunSummary()
    seen: list[_Seen] = []
    faces_file = _FacesFile(out_dir / "faces.jsonl")
    totals = [s.total for s in sources]
    total = None if None in totals else sum(t for t in totals if t is not None)
    bar = tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True)
    try:
        for batch, bad in _batches(itertools.chain.from_iterable(sources), settings.run.batch_size):
            for item in bad:
                summary.bad_inputs[item.reason.value] += 1
                log.warning("skipped %s frame %d (%s): %s", item.source, item.number, item.name or "-", item.detail)
            bar.update(len(bad))
            for frame, faces in zip(batch, analyzer.analyze([f.image for f in batch]), strict=True):
                for face in faces:
                    identifier = face_id(frame.source, frame.number, face.index)
                    cluster = None
                    if face.embedding is None:
                        assert face.quality.rejection is not None
                        summary.rejected[face.quality.rejection.value] += 1
                    else:
                        cluster = clustering.add(
                            identifier,
                            face.embedding,
                            camera=frame.source,
                            frame_key=f"{frame.source}:{frame.number}",
                            timestamp=frame.timestamp,
                            quality=face.score,
                        ).cluster_id
                        thumbnail = _thumbnail_name(identifier)
                        cv2.imwrite(str(out_dir / thumbnail), face.crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
                        seen.append(_Seen(identifier, frame.source, frame.number, frame.timestamp, thumbnail))
                    faces_file.write(_face_record(frame, face, identifier, cluster))
                    summary.faces += 1
                summary.frames += 1
            faces_file.flush()
            bar.update(len(batch))
            bar.set_postfix(faces=summary.faces, clusters=clustering.cluster_count)
            if stop.is_set():
                summary.stopped_early = True
                break
    finally:
        bar.close()
        labels = clustering.labels()
        faces_file.finalise(labels)
        summary.clustered = len(seen)
        summary.clusters = len(set(labels.values()))
        summary.seconds = time.perf_counter() - started
        _write_clusters(out_dir, seen=seen, labels=labels, clustering=clustering, settings=settings, summary=summary)
    return summary


def _write_clusters(
    out_dir: Path,
    *,
    seen: list[_Seen],
    labels: dict[str, int],
    clustering: OnlineRankOrder,
    settings: Settings,
    summary: RunSummary,
) -> None:
    summaries = clustering.clusters()
    members: dict[int, list[_Seen]] = {}
    for face in seen:
        members.setdefault(labels[face.face_id], []).append(face)
    ordered = sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    records, gallery = [], []
    for cluster_id, faces in ordered:
        by_id = {f.face_id: f for f in faces}
        picks = [by_id[face_id] for _, face_id in summaries[cluster_id].representatives]
        first, last = faces[0], faces[-1]
        sources = sorted({f.source for f in faces})
        records.append(
            {
                "id": cluster_id,
                "size": len(faces),
                "first_seen": {
                    "face_id": first.face_id,
                    "frame": first.frame,
                    "timestamp": round(first.timestamp, 3),
                },
                "last_seen": {
                    "face_id": last.face_id,
                    "frame": last.frame,
                    "timestamp": round(last.timestamp, 3),
                },
                "sources": sources,
                "representatives": [f.face_id for f in picks],
            }
        )
        pick_ids = {f.face_id for f in picks}
        thumbs = [f.thumbnail for f in picks] + [f.thumbnail for f in faces if f.face_id not in pick_ids]
        gallery.append(
            GalleryCluster(
                cluster_id,
                len(faces),
                f"{first.source} #{first.frame}",
                f"{last.source} #{last.frame}",
                sources,
                thumbs,
            )
        )
    document = {"summary": summary.as_dict(), "clusters": records}
    (out_dir / "clusters.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    write_gallery(
        out_dir / "index.html",
        "facestream: faces by identity",
        summary.line(out_dir),
        gallery,
        settings.run.gallery_faces_per_cluster,
    )
