"""Live cameras: every source read at once, through drops, hangs and restarts, against real servers on
127.0.0.1 (an HTTP MJPEG server as IP cameras serve, Debian's GStreamer RTSP server)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import pytest

from models.analyzer import FaceAnalyzer
from models.settings import ModelSettings
from streaming.decode import decode_image
from streaming.live_stream import StreamTimeouts, Transport
from streaming.read_policy import ReaderState, ReadPolicy
from streaming.readers import Readers
from streaming.sources import Frame, FrameSource
from tests.conftest import data_dir
from tests.live_servers import Behaviour, MjpegServer, clip_jpegs, rtsp_server
from workers.plumbing.lifecycle import StopFlag
from workers.produce.source_readers import readers_of
from workers.run.run_job import run_pipeline
from workers.settings import Settings

FAST = StreamTimeouts(open_s=3.0, read_s=1.0)
QUICK_RETRY = ReadPolicy(backoff_first_s=0.2, backoff_max_s=0.5)


def _read(readers: Readers, seconds: float) -> list[Frame]:
    """The frames the readers give in ``seconds``; closes them."""
    frames: list[Frame] = []
    readers.start()
    deadline = time.monotonic() + seconds
    try:
        for item in readers.items():
            if isinstance(item, Frame):
                frames.append(item)
            if time.monotonic() > deadline:
                break
    finally:
        readers.close()
    return frames


@pytest.mark.parametrize("cameras", [2, 8])
def test_every_camera_is_read_at_once(server: MjpegServer, clip: list[bytes], cameras: int) -> None:
    names = [f"cam{i}" for i in range(cameras)]
    for name in names:
        server.paths[name] = Behaviour(clip, fps=10)
    sources = [FrameSource(server.url(name), timeouts=FAST) for name in names]
    frames = _read(Readers([(source, QUICK_RETRY) for source in sources]), 3.0)
    counts = Counter(frame.source for frame in frames)
    # Camera ids from the URL (host, port, path); every camera gave frames at its own pace, none waited for
    # another to end.
    assert set(counts) == {f"127.0.0.1_{server.port}_{name}" for name in names}
    assert min(counts.values()) >= 15, counts
    assert all(server.requests[name] == 1 for name in names)


def test_a_dropped_stream_reconnects_in_a_new_session(server: MjpegServer, clip: list[bytes]) -> None:
    server.paths["door"] = Behaviour(clip, fps=20, close_after_s=1.5)
    readers = Readers([(FrameSource(server.url("door"), "door", timeouts=FAST), QUICK_RETRY)])
    frames = _read(readers, 5.0)
    numbers: dict[str, list[int]] = defaultdict(list)
    for frame in frames:
        numbers[str(frame.session)].append(frame.number)
    assert server.requests["door"] >= 2
    assert len(numbers) >= 2, "frames after the drop flow, in a session of their own"
    assert all(n == list(range(len(n))) for n in numbers.values()), "each session numbers its frames from 0"
    assert list(numbers) == sorted(numbers), "sessions sort by their start"
    status = readers.statuses[0]
    assert status.drops >= 1
    assert status.connections == len(numbers)


def test_a_hung_stream_times_out_and_reconnects(server: MjpegServer, clip: list[bytes]) -> None:
    server.paths["hall"] = Behaviour(clip, hang_after=2)  # headers and two frames, then silence
    readers = Readers([(FrameSource(server.url("hall"), "hall", timeouts=FAST), QUICK_RETRY)])
    frames = _read(readers, 3.5)
    assert server.requests["hall"] >= 2
    assert len({frame.session for frame in frames}) >= 2
    assert readers.statuses[0].drops >= 1


def test_a_camera_that_never_comes_back_is_given_up_after_its_retries(server: MjpegServer) -> None:
    server.paths["gone"] = Behaviour([], down=True)
    policy = ReadPolicy(backoff_first_s=0.1, backoff_max_s=0.2, max_retries=2)
    readers = Readers([(FrameSource(server.url("gone"), "gone", timeouts=FAST), policy)]).start()
    started = time.monotonic()
    items = list(readers.items())  # ends by itself: the only source was given up
    assert items == [None] * len(items)
    assert time.monotonic() - started < 10
    (status,) = readers.failed()
    assert status.state is ReaderState.FAILED
    assert status.error is not None
    assert "gave up after 2 reconnection(s)" in status.error
    assert server.requests["gone"] == 3


def test_a_live_reader_drops_stale_frames_instead_of_lagging(server: MjpegServer, clip: list[bytes]) -> None:
    server.paths["busy"] = Behaviour(clip, fps=25)
    readers = Readers([(FrameSource(server.url("busy"), "busy", timeouts=FAST), ReadPolicy(live_queue=2))]).start()
    try:
        time.sleep(2.0)  # the consumer is busy elsewhere
        waiting = [item for item in _take(readers, 3)]
    finally:
        readers.close()
    status = readers.statuses[0]
    assert status.dropped_stale >= 20
    # What it gets next is the newest: within a frame or two of the camera's latest.
    assert waiting[0] is not None
    assert status.frames - 1 - waiting[0].number <= 3


def _take(readers: Readers, count: int) -> list[Frame | None]:
    taken: list[Frame | None] = []
    for item in readers.items():
        taken.append(item if isinstance(item, Frame) else None)
        if len(taken) == count:
            break
    return taken


def test_frames_are_scaled_and_thinned_at_the_edge(server: MjpegServer, clip: list[bytes]) -> None:
    server.paths["yard"] = Behaviour(clip, fps=25)
    policy = ReadPolicy(max_size=240, max_fps=5)
    frames = _read(Readers([(FrameSource(server.url("yard"), "yard", timeouts=FAST), policy)]), 3.0)
    assert {frame.image.shape for frame in frames} == {(135, 240, 3)}  # 480x270, aspect kept
    stamps = [frame.timestamp for frame in frames]
    assert 8 <= len(frames) <= 17
    assert min(b - a for a, b in itertools.pairwise(stamps)) >= 0.99 / 5


@pytest.mark.parametrize("transport", [Transport.TCP, Transport.UDP])
def test_an_rtsp_camera_is_read_over_tcp_and_udp(tmp_path: Path, clip: list[bytes], transport: Transport) -> None:
    for number, jpeg in enumerate(clip):
        (tmp_path / f"{number:05d}.jpg").write_bytes(jpeg)
    with rtsp_server(tmp_path, paths=("gate",)) as base:
        source = FrameSource(f"{base}/gate", timeouts=FAST, transport=transport)
        frames = _read(Readers([(source, QUICK_RETRY)]), 2.0)
    assert len(frames) >= 10
    assert frames[0].source.endswith("_gate")
    assert frames[0].image.shape[1:] == (480, 3)  # RTP/JPEG rounds the height up to 8 pixels
    assert frames[0].session is not None


def test_files_are_merged_in_turn_the_same_way_every_time() -> None:
    videos = [
        data_dir("videos", name)
        for name in ("intel_head-pose-face-detection-female.mp4", "intel_face-demographics-walking.mp4")
    ]

    def order() -> list[tuple[str, int]]:
        sources = [FrameSource(str(video)) for video in videos]
        readers = Readers([(source, ReadPolicy(file_sessions=False)) for source in sources]).start()
        return [(item.source, item.number) for item in readers.items() if isinstance(item, Frame)]

    first = order()
    assert first == order()
    assert len(first) == 23 + 35
    assert [camera for camera, _ in first[:4]] == [
        "intel_head-pose-face-detection-female",
        "intel_face-demographics-walking",
    ] * 2


def test_run_on_two_live_cameras_one_dropping_writes_every_output_when_stopped(
    server: MjpegServer, clip: list[bytes], analyzer: FaceAnalyzer, cpu_models: ModelSettings, tmp_path: Path
) -> None:
    server.paths["door"] = Behaviour(clip, fps=12, close_after_s=2.5)
    server.paths["hall"] = Behaviour(clip, fps=12)
    settings = Settings(models=cpu_models)
    sources = [FrameSource(server.url(name), name, timeouts=FAST) for name in ("door", "hall")]
    stop = StopFlag()
    threading.Timer(7.0, stop.set).start()
    summary = run_pipeline(
        readers_of(sources, settings), tmp_path, settings, analyzer=analyzer, stop=stop, progress=False
    )
    assert summary.stopped_early
    for name in ("faces.jsonl", "appearances.jsonl", "clusters.json", "index.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    faces = [json.loads(line) for line in (tmp_path / "faces.jsonl").read_text().splitlines()]
    assert {face["source"] for face in faces} == {"door", "hall"}, "both cameras read at once"
    sessions = {face["face_id"].split(":")[0] for face in faces if face["source"] == "door"}
    assert len(sessions) >= 2, "frames after the drop flow"
    assert all(face["track"].startswith(face["face_id"].split(":")[0] + ":") for face in faces), "no track spans it"
    appearances = [json.loads(line) for line in (tmp_path / "appearances.jsonl").read_text().splitlines()]
    assert {a["track"].split(":")[0] for a in appearances if a["camera"] == "door"} == sessions


def test_a_reader_whose_decoding_falls_behind_skips_to_the_newest_frames(server: MjpegServer) -> None:
    """A camera sending more than this machine can decode: the reader skips undecoded frames (counted) and stays
    near the camera's newest frame instead of falling ever further behind."""
    small = clip_jpegs(data_dir("videos", "intel_head-pose-face-detection-male.mp4"), 10)
    big = [bytes(cv2.imencode(".jpg", cv2.resize(decode_image(jpeg), (1920, 1080)))[1]) for jpeg in small]
    server.paths["fast"] = Behaviour(big, fps=1000)
    readers = Readers([(FrameSource(server.url("fast"), "fast", timeouts=FAST), ReadPolicy(max_size=640))])
    frames = _read(readers, 3.0)
    status = readers.statuses[0]
    assert status.dropped_stale > len(frames) / 4, (status.dropped_stale, len(frames))
    assert frames[-1].image.shape == (360, 640, 3)
