"""End-to-end throughput and latency through Kafka and Redis, beside `facestream run` on the same frames.

Starts a Kafka broker (scripts/kafka) and a redis-server of its own, cuts a clip into JPEG frames once, then
for each repeat: `facestream run` on those frames in this process (the baseline), and the same frames
produced to a fresh frames topic for one `facestream worker --role all` process, timed from the first frame
produced to the last assignment read from the identities topic. Latency is per face, from the moment its
frame was produced to the moment its assignment was read (read_committed). Figures are medians over the
repeats; the ratio (run time / streaming time) is the price of Kafka and Redis on this machine.

    uv run python -m bench.streaming [--video PATH] [--frames N] [--repeats 3] [--fps 0]

--fps 0 produces as fast as the broker takes frames (throughput; latency then includes the backlog);
--fps 10 paces the producer below the pipeline's rate, which shows latency without a backlog.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import Consumer, Producer

from bench.common import DATA, median, require, video_frames
from models.settings import ModelSettings, RuntimeSettings
from streaming.frame_headers import FrameHeaders
from streaming.jpeg import encode_jpeg
from streaming.messages import Assignment
from streaming.sources import FrameSource
from tests.local_services import free_port, fresh_kafka, http_get, kafka_broker, redis_server, settings_env, wait_for
from workers.produce.source_readers import readers_of
from workers.run.run_job import run_pipeline
from workers.settings import Settings, WorkerSettings


@dataclass
class Result:
    seconds: float
    frames: int
    faces: int
    latencies: list[float]


def _baseline(folder: Path, out: Path, settings: Settings) -> Result:
    started = time.perf_counter()
    summary = run_pipeline(readers_of([FrameSource(str(folder), "bench")], settings), out, settings, progress=False)
    return Result(time.perf_counter() - started, summary.frames, summary.clustered, [])


def _streaming(jpegs: list[bytes], bootstrap: str, redis_url: str, fps: float, expected_faces: int) -> Result:
    kafka = fresh_kafka(bootstrap)
    suffix = kafka.frames_topic.removeprefix("frames-")
    port = free_port()
    worker_settings = WorkerSettings(cluster_group=f"cluster-{suffix}", redis_url=redis_url, metrics_port=port)
    env = settings_env(Settings(kafka=kafka, worker=worker_settings))
    command = [sys.executable, "-m", "workers.cli", "worker", "--role", "all", "--cpu", "--group", f"embed-{suffix}"]
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    arrivals: dict[str, float] = {}
    done = threading.Event()

    def read_identities() -> None:
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-{suffix}", "auto.offset.reset": "earliest"}
        )
        consumer.subscribe([kafka.identities_topic])
        try:
            while not done.is_set() and len(arrivals) < expected_faces:
                message = consumer.poll(0.2)
                if message is None or message.error() or b'"type":"assignment"' not in (message.value() or b""):
                    continue
                arrivals.setdefault(Assignment.from_json(message.value()).face_id, time.perf_counter())
        finally:
            consumer.close()

    try:
        wait_for(lambda: http_get(port, "/readyz")[0] == 200 or worker.poll() is not None, 120, "the worker")
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited: {worker.communicate()[1][-2000:]}")
        reader = threading.Thread(target=read_identities, daemon=True)
        reader.start()
        time.sleep(1.0)  # let the reader join its group before the first frame
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        sent: dict[str, float] = {}
        started = time.perf_counter()
        for number, jpeg in enumerate(jpegs):
            if fps > 0:
                time.sleep(max(0.0, started + number / fps - time.perf_counter()))
            headers = FrameHeaders(camera="bench", frame=number, timestamp=time.time(), space=f"bench{suffix}")
            sent[f"bench:{number}"] = time.perf_counter()
            producer.produce(kafka.frames_topic, key=b"bench", value=jpeg, headers=headers.to_kafka())
            producer.poll(0)
        producer.flush(30)
        reader.join(timeout=600)
        seconds = max(arrivals.values(), default=started) - started
    finally:
        done.set()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
    latencies = [at - sent[face.rsplit(":", 1)[0]] for face, at in arrivals.items()]
    return Result(seconds, len(jpegs), len(arrivals), latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=DATA / "videos" / "short_hamilton_clip.mp4")
    parser.add_argument("--frames", type=int, default=None, help="first N frames (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fps", type=float, default=0.0, help="producer pace (0: as fast as possible)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    jpegs = [encode_jpeg(frame) for frame in video_frames(require(args.video), args.frames)]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        folder = root / "frames"
        folder.mkdir()
        for number, jpeg in enumerate(jpegs):
            (folder / f"{number:06d}.jpg").write_bytes(jpeg)
        models = ModelSettings(runtime=RuntimeSettings(providers=("CPUExecutionProvider",)))
        settings = Settings(models=models, worker=WorkerSettings(metrics_port=0))
        (root / "kafka").mkdir()
        (root / "redis").mkdir()
        with kafka_broker(root / "kafka") as bootstrap, redis_server(root / "redis") as redis:
            runs: list[Result] = []
            streams: list[Result] = []
            for repeat in range(args.repeats):
                runs.append(_baseline(folder, root / f"run{repeat}", settings))
                streams.append(_streaming(jpegs, bootstrap, redis.url, args.fps, runs[-1].faces))
                print(
                    f"repeat {repeat + 1}: run {runs[-1].seconds:.1f} s, streaming {streams[-1].seconds:.1f} s "
                    f"({streams[-1].faces}/{runs[-1].faces} faces assigned)",
                    file=sys.stderr,
                )
    run_s = median([r.seconds for r in runs])
    stream_s = median([s.seconds for s in streams])
    p50 = median([float(np.percentile(s.latencies, 50)) for s in streams if s.latencies])
    p99 = median([float(np.percentile(s.latencies, 99)) for s in streams if s.latencies])
    report = {
        "video": args.video.name,
        "frames": len(jpegs),
        "faces": streams[-1].faces,
        "producer_fps": args.fps,
        "run_seconds": round(run_s, 2),
        "run_frames_per_s": round(len(jpegs) / run_s, 1),
        "streaming_seconds": round(stream_s, 2),
        "streaming_frames_per_s": round(len(jpegs) / stream_s, 1),
        "streaming_faces_per_s": round(streams[-1].faces / stream_s, 1),
        "latency_p50_s": round(p50, 3),
        "latency_p99_s": round(p99, 3),
        "run_over_streaming": round(run_s / stream_s, 2),
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['frames']} frames of {report['video']}, {report['faces']} faces, medians of {args.repeats}")
    print(f"facestream run      {run_s:7.1f} s  {report['run_frames_per_s']:6.1f} frames/s")
    print(
        f"Kafka + Redis       {stream_s:7.1f} s  {report['streaming_frames_per_s']:6.1f} frames/s  "
        f"{report['streaming_faces_per_s']:6.1f} faces/s  latency p50 {p50:.3f} s  p99 {p99:.3f} s "
        f"(producer at {'full speed' if not args.fps else f'{args.fps:g} fps'})"
    )
    print(f"run / streaming     {report['run_over_streaming']:.2f}x")


if __name__ == "__main__":
    main()
