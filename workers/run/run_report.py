"""What `facestream run` reports when it ends: the summary line, clusters.json, and the gallery (index.html)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clustering.store import ClusterSummary
from workers.run.gallery import GalleryCluster, write_gallery


@dataclass
class RunSummary:
    frames: int = 0
    detected_frames: int = 0
    faces: int = 0
    clustered: int = 0
    clusters: int = 0
    appearances: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bad_inputs: Counter[str] = field(default_factory=Counter)
    #: What became of each command of --corrections: applied, conflict, duplicate, or why it could not apply.
    corrections: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    stopped_early: bool = False

    def line(self, out_dir: Path) -> str:
        rejected = ", ".join(f"{n} {why}" for why, n in sorted(self.rejected.items())) or "none"
        bad = ", ".join(f"{n} {why}" for why, n in sorted(self.bad_inputs.items())) or "none"
        rate = self.faces / self.seconds if self.seconds else 0.0
        state = "stopped early" if self.stopped_early else "done"
        corrections = ", ".join(f"{n} {what}" for what, n in sorted(self.corrections.items()))
        return (
            f"{state}: {self.frames} frames, {self.faces} faces ({self.clustered} embedded and clustered; "
            f"rejected: {rejected}), {self.appearances} appearances, {self.clusters} clusters, bad inputs: {bad}; "
            + (f"corrections: {corrections}; " if corrections else "")
            + f"{self.seconds:.1f} s ({rate:.1f} faces/s) -> {out_dir}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "detected_frames": self.detected_frames,
            "faces": self.faces,
            "clustered": self.clustered,
            "clusters": self.clusters,
            "appearances": self.appearances,
            "rejected": dict(self.rejected),
            "bad_inputs": dict(self.bad_inputs),
            "corrections": dict(self.corrections),
            "seconds": round(self.seconds, 3),
            "stopped_early": self.stopped_early,
        }


@dataclass(frozen=True)
class Seen:
    face_id: str
    source: str
    frame: int
    timestamp: float
    thumbnail: str


@dataclass(frozen=True)
class Appearance:
    anchor: str  # an embedded face of the track, whose final cluster is the appearance's
    camera: str
    first_timestamp: float
    last_timestamp: float


def _when(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


def appearance_text(appearances: list[Appearance]) -> str:
    """'3 appearances: door 2 (0:01-0:12, 1:30-1:41), hall 1 (0:05-0:09)' (times of video files)."""
    by_camera: dict[str, list[Appearance]] = {}
    for item in appearances:
        by_camera.setdefault(item.camera, []).append(item)
    parts = []
    for camera, items in sorted(by_camera.items()):
        spans = ", ".join(f"{_when(a.first_timestamp)}-{_when(a.last_timestamp)}" for a in items[:5])
        more = ", ..." if len(items) > 5 else ""
        parts.append(f"{camera} {len(items)} ({spans}{more})")
    return f"{len(appearances)} appearance{'s' if len(appearances) != 1 else ''}: " + "; ".join(parts)


def _seen_at(face: Seen) -> dict[str, Any]:
    return {"face_id": face.face_id, "frame": face.frame, "timestamp": round(face.timestamp, 3)}


def _cluster_record(cluster: ClusterSummary, faces: list[Seen], picks: list[Seen], appearances: int) -> dict[str, Any]:
    """A cluster as clusters.json lists it: its faces in the order they were seen."""
    return {
        "id": cluster.id,
        "name": cluster.name,
        "size": len(faces),
        "first_seen": _seen_at(faces[0]),
        "last_seen": _seen_at(faces[-1]),
        "sources": sorted({f.source for f in faces}),
        "representatives": [f.face_id for f in picks],
        "appearances": appearances,
    }


def write_clusters(
    out_dir: Path,
    *,
    clusters: dict[int, ClusterSummary],
    seen: list[Seen],
    appearances: list[Appearance],
    labels: dict[str, int],
    summary: RunSummary,
    faces_per_cluster: int,
) -> None:
    """clusters.json and index.html: each final cluster (largest first), its faces and appearances."""
    summaries = clusters
    members: dict[int, list[Seen]] = {}
    for face in seen:
        members.setdefault(labels[face.face_id], []).append(face)
    by_cluster: dict[int, list[Appearance]] = {}
    for item in appearances:
        by_cluster.setdefault(labels[item.anchor], []).append(item)
    ordered = sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    records, gallery = [], []
    for cluster_id, faces in ordered:
        by_id = {f.face_id: f for f in faces}
        picks = [by_id[face_id] for _, face_id in summaries[cluster_id].representatives]
        first, last = faces[0], faces[-1]
        sources = sorted({f.source for f in faces})
        records.append(_cluster_record(summaries[cluster_id], faces, picks, len(by_cluster.get(cluster_id, []))))
        pick_ids = {f.face_id for f in picks}
        shown = picks + [f for f in faces if f.face_id not in pick_ids]
        gallery.append(
            GalleryCluster(
                cluster_id,
                len(faces),
                f"{first.source} #{first.frame}",
                f"{last.source} #{last.frame}",
                sources,
                [f.thumbnail for f in shown],
                appearance_text(by_cluster[cluster_id]) if cluster_id in by_cluster else "",
                summaries[cluster_id].name,
                [f.face_id for f in shown],
            )
        )
    document = {"summary": summary.as_dict(), "clusters": records}
    (out_dir / "clusters.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    write_gallery(
        out_dir / "index.html",
        "facestream: faces by identity",
        summary.line(out_dir),
        gallery,
        faces_per_cluster,
    )
