"""Frames in, identities out, through the real broker and Redis: `facestream worker --role all` gives exactly
one assignment per face and the clusters `facestream run` gives on the same frames (faults:
tests/test_worker_faults.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_store import RedisStore
from models.analyzer import FaceAnalyzer
from models.settings import ModelSettings
from streaming.frame_headers import FrameHeaders
from streaming.produce import produce_sources
from streaming.sources import Frame, FrameSource, SourceItem
from tests.conftest import data_dir
from tests.dashboards import assert_dashboard_and_alerts_use_exported_metrics
from tests.local_services import free_port, http_get, wait_for
from tests.streams import (
    appearances,
    identities_view,
    read_all,
    read_messages,
)
from tests.worker_processes import (
    VIDEOS,
    settings_for,
    space_of,
    stop_process,
    worker_process,
)
from workers.produce.source_readers import readers_of
from workers.run.run_job import run_pipeline


def test_frames_in_identities_out_equal_facestream_run(
    kafka_bootstrap: str, redis_url: str, cpu_models: ModelSettings, analyzer: FaceAnalyzer, tmp_path: Path
) -> None:
    settings = settings_for(kafka_bootstrap, redis_url, cpu_models)
    sources = [FrameSource(str(data_dir("videos", name)), camera) for camera, name in VIDEOS.items()]
    produced = produce_sources(sources, settings.kafka, space=space_of(settings))
    assert produced.failed == 0

    # `facestream run` on the very frames the workers receive (the JPEGs on the frames topic, their headers).
    frames_dir = tmp_path / "frames"
    messages = read_messages(kafka_bootstrap, settings.kafka.frames_topic, idle_s=1.0)
    for message in messages:
        headers = FrameHeaders.from_kafka(message.headers())
        camera_dir = frames_dir / headers.camera
        camera_dir.mkdir(parents=True, exist_ok=True)
        (camera_dir / f"{headers.frame:06d}.jpg").write_bytes(message.value() or b"")
    stamps = {(h.camera, h.frame): h.timestamp for h in (FrameHeaders.from_kafka(m.headers()) for m in messages)}
    sessions = {h.camera: h.session for h in (FrameHeaders.from_kafka(m.headers()) for m in messages)}
    summary = run_pipeline(
        readers_of(
            [_StampedFolder(str(frames_dir / camera), camera, stamps, sessions[camera]) for camera in VIDEOS], settings
        ),
        tmp_path / "run",
        settings,
        analyzer=analyzer,
        progress=False,
    )
    lines = [json.loads(line) for line in (tmp_path / "run" / "faces.jsonl").read_text().splitlines()]
    expected = {line["face_id"]: line["cluster"] for line in lines if line["embedded"]}
    assert summary.frames == produced.frames
    assert len(expected) > 30

    port = free_port()
    worker = worker_process(settings, "all", f"embed-{space_of(settings)}", port)
    store = RedisStore(connect(redis_url), space_of(settings))
    try:
        wait_for(lambda: store.count() >= len(expected) or worker.poll() is not None, 300, "every face clustered")
        time.sleep(2)  # anything beyond the expected faces would show now
        wait_for(lambda: http_get(port, "/readyz")[0] == 200, 10, "/readyz")
        status, scraped = http_get(port, "/metrics")
    finally:
        out, err = stop_process(worker)
    assert worker.returncode == 0, err[-3000:]
    assert status == 200
    assert_dashboard_and_alerts_use_exported_metrics(scraped)
    for metric in (
        "facestream_frames_total",
        'facestream_stage_seconds_bucket{le="0.5",stage="detect"}',
        "facestream_faces_clustered_total",
        "facestream_redis_seconds_count",
        "facestream_batch_size_count",
    ):
        assert metric in scraped, metric

    labels = OnlineRankOrder.restore(store, 512, settings.clustering).labels()
    assert labels == expected
    assigned, view = identities_view([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
    assert set(assigned) == set(expected)
    assert set(assigned.values()) == {1}
    assert view == expected
    # One appearance per track with a clustered face, as `facestream run` reports them.
    run_appearances = [json.loads(line) for line in (tmp_path / "run" / "appearances.jsonl").read_text().splitlines()]
    published = appearances([v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)])
    assert sorted(a.track for a in published) == sorted(
        str(a["track"]) for a in run_appearances if a["cluster"] is not None
    )
    assert "stopped: " in out


class _StampedFolder(FrameSource):
    """A folder of video frames named by number, with the timestamps their headers carried."""

    def __init__(self, uri: str, camera: str, stamps: dict[tuple[str, int], float], session: str | None) -> None:
        super().__init__(uri, camera)
        self._stamps, self._session = stamps, session

    def frames(
        self, session: str | None = None, max_size: int | None = None, on_stale: Callable[[int], None] | None = None
    ) -> Iterator[SourceItem]:
        for item in super().frames(session, max_size, on_stale):
            if isinstance(item, Frame) and item.name is not None:
                number = int(Path(item.name).stem)
                stamp = self._stamps[(item.source, number)]
                # A video's frames (not photos), in the session the producer gave them.
                yield Frame(item.source, number, stamp, item.image, session=self._session)
            else:
                yield item
