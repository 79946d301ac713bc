"""`facestream run`: the whole pipeline in one process, no Kafka and no Redis, writing files a person reads.

Outputs in the chosen folder: faces.jsonl (one line per face of every frame, tracked or detected),
appearances.jsonl (one line per track), clusters.json, index.html and the thumbs/ it shows. Lines are written
as they happen; when the run ends (also on Ctrl-C) both files are rewritten once with final clusters, since
later faces can merge earlier clusters.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
from tqdm import tqdm

from clustering.engine import OnlineRankOrder
from models.analyzer import FaceAnalyzer
from models.frames import FrameResult, PipelineCounters
from models.pipeline import FacePipeline
from models.track_log import TrackSummary
from streaming.sources import BadInput, Frame, SourceItem
from workers.plumbing.faces import TrackedFaces
from workers.plumbing.frames import camera_frame
from workers.plumbing.lifecycle import StopFlag
from workers.produce.source_readers import PlannedReaders
from workers.run.corrections_file import CommandLine, PendingCorrections
from workers.run.run_files import JsonLines, appearance_line, face_line
from workers.run.run_report import Appearance, RunSummary, Seen, write_clusters
from workers.settings import Settings

log = logging.getLogger(__name__)


def _thumbnail_name(identifier: str) -> str:
    return "thumbs/" + re.sub(r"[^A-Za-z0-9._-]", "_", identifier) + ".jpg"


def _batches(items: Iterable[SourceItem | None], size: int, live: bool) -> Iterator[tuple[list[Frame], list[BadInput]]]:
    """Up to ``size`` frames at a time, with the bad inputs met on the way. With a ``live`` source a batch is cut
    short when the sources give nothing for a moment, so that no frame waits for others that are not there;
    files always fill their batches, so a run over them is cut the same way every time."""
    frames: list[Frame] = []
    bad: list[BadInput] = []
    for item in items:
        if isinstance(item, BadInput):
            bad.append(item)
            continue
        if item is not None:
            frames.append(item)
        if len(frames) == size or (live and item is None and (frames or bad)):
            yield frames, bad
            frames, bad = [], []
        elif item is None:
            yield [], []  # a moment with nothing: the caller sees its stop flag
    if frames or bad:
        yield frames, bad


class _Run:
    """The state of one run: the engine, the output files, and what the summary and gallery need."""

    def __init__(self, out_dir: Path, settings: Settings, analyzer: FaceAnalyzer) -> None:
        self.out_dir = out_dir
        self.settings = settings
        self.engine = OnlineRankOrder(analyzer.embedder.dimension, settings.clustering)
        self.summary = RunSummary()
        self.seen: list[Seen] = []
        self.appearances: list[Appearance] = []
        #: The anchor of each track: its latest embedded face, which stands for its other faces and appearances.
        self.tracked = TrackedFaces(self.engine)
        self.faces_file = JsonLines(out_dir / "faces.jsonl")
        self.appearances_file = JsonLines(out_dir / "appearances.jsonl")

    def frame(self, frame: Frame, result: FrameResult) -> None:
        for face in result.faces:
            anchor, assignment = self.tracked.place(face)
            cluster = None if anchor is None else self.engine.cluster_of(anchor)
            if assignment is not None and face.crop is not None:  # an embedded face keeps its aligned crop
                thumbnail = _thumbnail_name(face.face_id)
                cv2.imwrite(str(self.out_dir / thumbnail), face.crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
                self.seen.append(Seen(face.face_id, frame.source, frame.number, frame.timestamp, thumbnail))
            self.faces_file.write(face_line(frame, face, anchor, cluster))
        self.ended(result.appearances)

    def close(self, counters: PipelineCounters, pending: PendingCorrections, seconds: float) -> None:
        """Applies the corrections still waiting, finishes the output files and writes the gallery."""
        summary = self.summary
        summary.frames, summary.detected_frames, summary.faces = (
            counters.frames,
            counters.detected_frames,
            counters.faces,
        )
        summary.rejected = counters.rejected
        pending.apply_ready(self.engine, last_try=True)
        summary.corrections = pending.outcomes
        labels = self.engine.labels()
        erased = self.erase_forgotten(labels)
        self.faces_file.finalise(labels, erased)
        self.appearances_file.finalise(labels)
        summary.clustered = len(self.seen)
        summary.clusters = len(set(labels.values()))
        summary.seconds = seconds
        write_clusters(
            self.out_dir,
            clusters=self.engine.clusters(),
            seen=self.seen,
            appearances=self.appearances,
            labels=labels,
            summary=summary,
            faces_per_cluster=self.settings.run.gallery_faces_per_cluster,
        )

    def erase_forgotten(self, labels: dict[str, int]) -> frozenset[str]:
        """Drops the faces a `forget` correction erased, and their thumbnails; returns their ids."""
        erased = frozenset(seen.face_id for seen in self.seen if seen.face_id not in labels)
        for seen in self.seen:
            if seen.face_id in erased:
                (self.out_dir / seen.thumbnail).unlink(missing_ok=True)
        self.seen = [seen for seen in self.seen if seen.face_id not in erased]
        self.appearances = [item for item in self.appearances if item.anchor in labels]
        return erased

    def ended(self, appearances: list[TrackSummary]) -> None:
        for summary in appearances:
            anchor = self.tracked.anchors.get(summary.track)
            if summary.ended:
                self.tracked.anchors.pop(summary.track, None)
            cluster = None if anchor is None else self.engine.cluster_of(anchor)
            self.appearances_file.write(appearance_line(summary, anchor, cluster))
            self.summary.appearances += 1
            if anchor is not None:
                self.appearances.append(
                    Appearance(anchor, summary.camera, summary.first_timestamp, summary.last_timestamp)
                )


def run_pipeline(
    planned: PlannedReaders,
    out_dir: Path,
    settings: Settings,
    *,
    analyzer: FaceAnalyzer | None = None,
    stop: StopFlag | None = None,
    progress: bool = True,
    corrections: Sequence[CommandLine] = (),
) -> RunSummary:
    """Runs every source, read at once, through the pipeline into ``out_dir``; returns what happened.
    ``corrections`` (workers/run/corrections_file.py) apply as soon as what they name is clustered."""
    started = time.perf_counter()
    analyzer = analyzer or FaceAnalyzer.from_settings(settings.models)
    pipeline = FacePipeline(analyzer, settings.tracking)
    stop = stop or StopFlag()
    (out_dir / "thumbs").mkdir(parents=True, exist_ok=True)
    run = _Run(out_dir, settings, analyzer)
    summary = run.summary
    pending = PendingCorrections(list(corrections))
    bar = tqdm(total=planned.total, unit="frame", disable=not progress, dynamic_ncols=True)
    readers = planned.readers.start()
    try:
        for batch, bad in _batches(readers.items(), settings.run.batch_size, readers.live):
            for item in bad:
                summary.bad_inputs[item.reason.value] += 1
                log.warning("skipped %s frame %d (%s): %s", item.source, item.number, item.name or "-", item.detail)
            bar.update(len(bad))
            results = pipeline.process([camera_frame(frame) for frame in batch])
            for frame, result in zip(batch, results, strict=True):
                run.frame(frame, result)
            pending.apply_ready(run.engine)
            run.faces_file.flush()
            bar.update(len(batch))
            bar.set_postfix(faces=pipeline.counters.faces, clusters=run.engine.cluster_count)
            if stop.is_set():
                summary.stopped_early = True
                break
    finally:
        readers.close()
        bar.close()
        run.ended(pipeline.finish())
        run.close(pipeline.counters, pending, time.perf_counter() - started)
    return summary
