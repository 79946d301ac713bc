"""Live cameras through `facestream produce`: N HTTP MJPEG cameras at once, at full size and scaled at the edge.

Serves N live MJPEG streams on 127.0.0.1 (a clip's frames scaled to --size, looped at --fps, as an IP camera
serves them), starts a Kafka broker of its own, and for each camera count runs the producer's readers and
Kafka producer in this process for --seconds twice: frames sent at full size (max_size 0), then scaled to the
default edge size (the detector's input side). Prints, per run: frames per second sent per camera; CPU
(process time / wall, 100% = one core; the MJPEG server's threads are in it too, the broker is not); bytes
per camera per second, and bytes per frame as a ratio to full size's; frames decoded per camera per second;
stale frames dropped (skipped undecoded because decoding fell behind the camera, or decoded and then
overtaken by a newer one while the sending thread was busy). Then the reconnection time after a drop: a camera
whose stream closes every --drop-after seconds, from its last frame to the first frame of its next session,
median of --reconnects drops.

    uv run python -m bench.live_cameras [--cameras 1 4 8] [--seconds 10] [--size 1920x1080] [--fps 25]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from bench.common import DATA, median, require, video_frames
from streaming.live_stream import StreamTimeouts
from streaming.produce import ProduceSummary, produce_frames
from streaming.read_policy import ReadPolicy
from streaming.readers import Readers
from streaming.sources import Frame, FrameSource
from tests.live_servers import Behaviour, MjpegServer, mjpeg_server
from tests.local_services import fresh_kafka, kafka_broker
from workers.produce.source_readers import edge_size
from workers.settings import Settings


@dataclass
class Run:
    cameras: int
    max_size: int | None
    seconds: float
    cpu_s: float
    summary: ProduceSummary
    read: int  # frames decoded

    @property
    def frame_bytes(self) -> float:
        return self.summary.bytes / max(1, self.summary.frames)

    def row(self, full_frame_bytes: float | None) -> str:
        per_camera = self.summary.bytes / self.cameras / self.seconds
        ratio = f"{self.frame_bytes / full_frame_bytes:6.2f}" if full_frame_bytes else "   1.00"
        size = "full" if not self.max_size else str(self.max_size)
        fps = self.summary.frames / self.cameras / self.seconds
        return (
            f"{self.cameras:7d} {size:>6} {fps:9.1f} {100 * self.cpu_s / self.seconds:6.0f} "
            f"{per_camera / 1e3:10.0f} {ratio} {self.read / self.cameras / self.seconds:9.1f} "
            f"{self.summary.dropped_stale:8d}"
        )


def _jpegs(video: Path, size: tuple[int, int], count: int) -> list[bytes]:
    frames = []
    for image in video_frames(video, count):
        resized = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
        ok, data = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        frames.append(bytes(data))
    return frames


def _produce(server: MjpegServer, bootstrap: str, cameras: int, max_size: int | None, seconds: float) -> Run:
    kafka = fresh_kafka(bootstrap)
    sources = [FrameSource(server.url(f"cam{i}"), f"cam{i}") for i in range(cameras)]
    readers = Readers([(source, ReadPolicy(max_size=max_size, jpeg=True)) for source in sources]).start()
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    started_cpu, started = time.process_time(), time.monotonic()
    timer.start()
    summary = produce_frames(
        readers, {s.camera: "bench" for s in sources}, kafka, progress=False, should_stop=stop.is_set
    )
    wall, cpu = time.monotonic() - started, time.process_time() - started_cpu
    return Run(cameras, max_size, wall, cpu, summary, sum(s.frames for s in readers.statuses))


def _reconnect_times(server: MjpegServer, drops: int, drop_after_s: float, frames: list[bytes]) -> list[float]:
    """Seconds from a camera's last frame before a drop to the first frame of its next session."""
    server.paths["dropping"] = Behaviour(frames, fps=25, close_after_s=drop_after_s)
    source = FrameSource(server.url("dropping"), "dropping", timeouts=StreamTimeouts())
    readers = Readers([(source, ReadPolicy(max_size=640))]).start()
    last: dict[str | None, float] = {}
    first: dict[str | None, float] = {}
    try:
        for item in readers.items():
            if isinstance(item, Frame):
                first.setdefault(item.session, item.timestamp)
                last[item.session] = item.timestamp
            if len(first) > drops:
                break
    finally:
        readers.close()
    sessions = list(first)
    return [first[b] - last[a] for a, b in itertools.pairwise(sessions)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DATA / "videos" / "short_hamilton_clip.mp4")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="1920x1080", help="the cameras' frame size, WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--reconnects", type=int, default=5)
    parser.add_argument(
        "--drop-after", type=float, default=2.0, help="seconds a connection of the dropping camera lasts"
    )
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    frames = _jpegs(require(args.video), (width, height), 50)
    default_size = edge_size(Settings(), producer=True)
    jpeg_kb = median([len(f) for f in frames]) / 1e3
    print(
        f"{len(frames)} frames of {args.video.name} at {width}x{height} (JPEG {jpeg_kb:.0f} KB), "
        f"{args.fps:g} fps per camera, {args.seconds:g} s a run; default edge size {default_size}"
    )
    print("cameras   size  sent fps   CPU%   KB/s/cam  B/frame ratio  read fps  stale")
    with tempfile.TemporaryDirectory() as folder, kafka_broker(Path(folder)) as bootstrap, mjpeg_server() as server:
        for cameras in args.cameras:
            for i in range(cameras):
                server.paths[f"cam{i}"] = Behaviour(frames, fps=args.fps)
            full = _produce(server, bootstrap, cameras, None, args.seconds)
            print(full.row(None), flush=True)
            print(_produce(server, bootstrap, cameras, default_size, args.seconds).row(full.frame_bytes), flush=True)
        times = _reconnect_times(server, args.reconnects, args.drop_after, frames)
    print(
        f"reconnection after a drop: median {median(times):.2f} s over {len(times)} drops "
        f"({', '.join(f'{t:.2f}' for t in times)}); first wait {ReadPolicy().backoff_first_s} s"
    )


if __name__ == "__main__":
    main()
