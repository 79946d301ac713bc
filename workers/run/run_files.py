"""The JSON-lines files of `facestream run`: faces.jsonl and appearances.jsonl, and how a line looks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from models.frames import FaceObservation
from models.track_log import TrackSummary
from streaming.sources import Frame


class JsonLines:
    """A JSON-lines file written as records arrive, rewritten once at the end with final clusters.

    A record may carry ``_anchor``: the id of the embedded face whose cluster becomes the record's
    ``cluster`` (later faces can merge clusters, so the cluster a line gets while running is provisional).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO = path.open("w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        self._handle.flush()

    def finalise(self, clusters: dict[str, int], erased: frozenset[str] = frozenset()) -> None:
        """Rewrites every line with its final cluster, atomically, leaving out the faces ``erased``."""
        self._handle.close()
        partial = self.path.with_suffix(".jsonl.tmp")
        with self.path.open(encoding="utf-8") as src, partial.open("w", encoding="utf-8") as dst:
            for line in src:
                record = json.loads(line)
                if record.get("face_id") in erased:
                    continue
                anchor = record.pop("_anchor", None)
                if anchor is not None:
                    record["cluster"] = clusters.get(anchor)
                dst.write(json.dumps(record, separators=(",", ":")) + "\n")
        os.replace(partial, self.path)


def face_line(frame: Frame, face: FaceObservation, anchor: str | None, cluster: int | None) -> dict[str, Any]:
    quality = face.quality
    record: dict[str, Any] = {
        "face_id": face.face_id,
        "source": frame.source,
        "frame": frame.number,
        "timestamp": round(frame.timestamp, 3),
        "track": face.track,
        "embedded": face.embedding is not None,
        "box": [round(float(v), 1) for v in face.box],
        "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks],
        "score": round(face.score, 4),
        "quality": None
        if quality is None
        else {
            "face_size": round(quality.face_size, 1),
            "sharpness": round(quality.sharpness, 1),
            "yaw": round(quality.yaw, 3),
        },
        "rejected": quality.rejection.value if quality is not None and quality.rejection else None,
        "cluster": cluster,
        "_anchor": anchor,
    }
    if frame.name is not None:
        record["image"] = frame.name
    return record


def appearance_line(summary: TrackSummary, anchor: str | None, cluster: int | None) -> dict[str, Any]:
    return {
        "camera": summary.camera,
        "track": summary.track,
        "sequence": summary.sequence,
        "cluster": cluster,
        "first_frame": summary.first_frame,
        "last_frame": summary.last_frame,
        "first_timestamp": round(summary.first_timestamp, 3),
        "last_timestamp": round(summary.last_timestamp, 3),
        "faces": summary.faces,
        "embedded": summary.embedded,
        "best_face": summary.best_face,
        "best_box": None if summary.best_box is None else [round(v, 1) for v in summary.best_box],
        "ended": summary.ended,
        "_anchor": anchor,
    }
