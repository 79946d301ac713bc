"""The sources of `facestream produce` and `facestream run` (arguments and a camera list), each with how it is
read, turned into one set of readers (streaming/readers.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streaming.camera_list import CameraEntry, read_camera_list
from streaming.live_stream import StreamTimeouts, Transport
from streaming.read_policy import ReadPolicy
from streaming.readers import Readers
from streaming.sources import FrameSource
from workers.settings import Settings


@dataclass(frozen=True)
class SourcePlan:
    """What a command was asked to read: sources named on its command line and a camera list's entries."""

    uris: Sequence[str]
    camera: str | None = None  # the id of the one source on the command line, instead of its name
    cameras_file: Path | None = None
    space: str = "default"  # of every source but camera-list entries that name their own
    every: int = 1
    fps: float | None = None  # files: replay at this rate (None: the file's own; 0: as fast as taken)
    producer: bool = True  # `produce`: sessions for files too, frames scaled to the detector by default


@dataclass(frozen=True)
class PlannedReaders:
    readers: Readers
    spaces: dict[str, str]  # camera id -> identity space
    total: int | None  # frames to expect, where every source is a file or folder


def edge_size(settings: Settings, producer: bool) -> int | None:
    """The long side frames are scaled to at the edge: the setting, else the detector's input for a producer
    (Kafka carries what the detector looks at), else full size."""
    configured = settings.sources.max_size
    if configured is not None:
        return configured or None
    return max(settings.models.detector.input_size) if producer else None


def plan_readers(plan: SourcePlan, settings: Settings) -> PlannedReaders:
    """Readers of every source of ``plan``: SourceError or CameraListError when one cannot be used."""
    options = settings.sources
    entries: list[CameraEntry] = []
    cameras_file = plan.cameras_file or options.cameras_file
    if cameras_file is not None:
        entries = read_camera_list(cameras_file)
    timeouts = StreamTimeouts(options.open_timeout_s, options.read_timeout_s)
    named = [(uri, plan.camera, None) for uri in plan.uris] + [(e.url, e.id, e) for e in entries]
    sources: list[tuple[FrameSource, CameraEntry | None]] = []
    for uri, camera, entry in named:
        transport = Transport((entry and entry.transport) or options.transport)
        sources.append(
            (FrameSource(uri, camera, settings.run.max_pixels, timeouts=timeouts, transport=transport), entry)
        )
    return _planned(plan, settings, sources)


def readers_of(sources: Sequence[FrameSource], settings: Settings, *, producer: bool = False) -> PlannedReaders:
    """Readers of sources opened already, as `run` (or, with ``producer``, `produce`) reads them."""
    return _planned(SourcePlan((), producer=producer), settings, [(source, None) for source in sources])


def _planned(
    plan: SourcePlan, settings: Settings, sources: Sequence[tuple[FrameSource, CameraEntry | None]]
) -> PlannedReaders:
    pairs = [(source, _policy(plan, settings, source, entry)) for source, entry in sources]
    spaces = {source.camera: (entry and entry.space) or plan.space for source, entry in sources}
    totals = [source.total for source, _ in sources]
    total = None if None in totals else sum(t or 0 for t in totals) // plan.every
    return PlannedReaders(Readers(pairs), spaces, total)


def _policy(plan: SourcePlan, settings: Settings, source: FrameSource, entry: CameraEntry | None) -> ReadPolicy:
    options = settings.sources
    max_size = edge_size(settings, plan.producer)
    if entry is not None and entry.max_size is not None:
        max_size = entry.max_size or None
    pace = None
    if plan.producer and not source.live:
        pace = (source.fps if plan.fps is None else plan.fps) or None
    return ReadPolicy(
        max_size=max_size,
        max_fps=(entry and entry.max_fps) or options.max_fps,
        every=plan.every,
        pace=pace,
        backoff_first_s=options.reconnect_first_s,
        backoff_max_s=options.reconnect_max_s,
        max_retries=options.max_retries,
        live_queue=options.live_queue,
        file_sessions=plan.producer,
        jpeg=plan.producer,
    )
