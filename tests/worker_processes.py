"""Helpers of the tests that run the workers end to end: settings on fresh topics, `facestream worker`
processes and their logs, and which frames' faces reached the faces topic."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Message

from models.analyzer import FaceAnalyzer
from models.frames import CameraFrame
from models.pipeline import FacePipeline
from models.settings import ModelSettings, TrackingSettings
from streaming.frame_headers import FrameHeaders
from streaming.messages import FaceRecord, TrackRecord
from tests.local_services import fresh_kafka, settings_env
from workers.plumbing.encoded_picture import EncodedPicture
from workers.settings import Settings, WorkerSettings

VIDEOS = {
    "classroom": "intel_classroom.mp4",
    "pair": "intel_head-pose-face-detection-female-and-male.mp4",
    "walking": "intel_face-demographics-walking.mp4",
}


def settings_for(
    bootstrap: str, redis_url: str, cpu_models: ModelSettings, partitions: int = 1, session_timeout_ms: int = 6000
) -> Settings:
    kafka = fresh_kafka(bootstrap, partitions, session_timeout_ms=session_timeout_ms)
    group = "cluster-" + kafka.frames_topic.removeprefix("frames-")
    # Short clips: embed a track's face every quarter second, so that clustering has work to do.
    return Settings(
        models=cpu_models,
        kafka=kafka,
        worker=WorkerSettings(cluster_group=group, redis_url=redis_url),
        tracking=TrackingSettings(embed_interval_s=0.25),
    )


def space_of(settings: Settings) -> str:
    """The identity space of a test's frames: its own, like its topics."""
    return "e" + settings.kafka.frames_topic.removeprefix("frames-")


def worker_process(
    settings: Settings, role: str, group: str, port: int, log: Path | None = None, **env: str
) -> subprocess.Popen[str]:
    """A `facestream worker` process; its log goes to ``log`` (to be read while it runs), or to a pipe."""
    command = [sys.executable, "-m", "workers.cli", "worker", "--role", role, "--cpu", "--group", group]
    with log.open("a") if log is not None else contextlib.nullcontext() as handle:
        return subprocess.Popen(
            command,
            env=settings_env(settings, FACESTREAM_WORKER__METRICS_PORT=str(port), **env),
            stdout=subprocess.PIPE if log is None else subprocess.DEVNULL,
            stderr=subprocess.PIPE if log is None else handle,
            text=True,
        )


def logged_at(log: Path, text: str) -> list[float]:
    """When (seconds since the epoch) each line of ``log`` holding ``text`` was written."""
    stamps = []
    for line in log.read_text().splitlines():
        if text in line:
            stamps.append(time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000)
    return stamps


def stop_process(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()


def frames_with_faces(frames: list[Message], analyzer: FaceAnalyzer, settings: Settings) -> set[tuple[str, int]]:
    """(camera, frame) of every frame in which the pipeline, uninterrupted, sees a face."""
    pipeline = FacePipeline(analyzer, settings.tracking)
    seen: set[tuple[str, int]] = set()
    for start in range(0, len(frames), 8):
        batch = [(FrameHeaders.from_kafka(m.headers()), m.value() or b"") for m in frames[start : start + 8]]
        cameras = [CameraFrame(h.camera, h.frame, h.timestamp, EncodedPicture(v)) for h, v in batch]
        seen |= {(r.camera, r.number) for r in pipeline.process(cameras) if r.faces}
    return seen


def frames_covered(records: list[FaceRecord | TrackRecord]) -> set[tuple[str, int]]:
    """(camera, frame) of every frame inside an appearance: no face of those frames went unreported."""
    tracks = [r for r in records if isinstance(r, TrackRecord)]
    return {(t.camera, n) for t in tracks for n in range(t.first_frame, t.last_frame + 1)}
