"""How many cameras one process keeps up with: N cameras paced at their frame rate through the face pipeline.

Each camera is the clip looped from its own offset, JPEG-encoded once (the frames topic carries JPEG), and
decoded again as the embed worker does. Frames become due at the camera's rate; each turn takes the frames
due (up to the batch size) and runs them through decode, the pipeline and clustering. A configuration keeps
real time when the oldest frame still waiting is never more than a second late; one that falls ten seconds
behind is stopped. Each configuration runs in a fresh process, so the peak RSS is its own; tracking on and
off run in the same invocation.

    uv run python -m bench.cameras [--cameras 1 2 4 6 8] [--seconds 20] [--fps 25] [--video PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2

from bench.common import DATA, video_frames
from clustering.engine import OnlineRankOrder
from models.analyzer import FaceAnalyzer
from models.frames import CameraFrame
from models.pipeline import FacePipeline
from models.settings import ModelSettings, RuntimeSettings
from streaming.decode import decode_image
from workers.plumbing.faces import TrackedFaces
from workers.settings import Settings

GIVE_UP_S = 10.0
REAL_TIME_S = 1.0


def one(cameras: int, tracking: bool, seconds: float, fps: float, video: Path) -> dict[str, float]:
    settings = Settings()  # FACESTREAM_TRACKING__... variables apply, to try other settings
    settings = settings.model_copy(update={"tracking": settings.tracking.model_copy(update={"enabled": tracking})})
    models = ModelSettings(runtime=RuntimeSettings(providers=("CPUExecutionProvider",)))
    analyzer = FaceAnalyzer.from_settings(models)
    pipeline = FacePipeline(analyzer, settings.tracking)
    engine = OnlineRankOrder(analyzer.embedder.dimension, settings.clustering)
    tracked = TrackedFaces(engine)
    clip = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in video_frames(video)]
    analyzer.detector.detect([decode_image(clip[0])])  # load the models before the clock starts
    per_camera = int(seconds * fps)
    sent = [0] * cameras
    worst_lag = 0.0
    started = time.perf_counter()
    cpu_started = time.process_time()
    while min(sent) < per_camera:
        now = time.perf_counter() - started
        due = sorted((sent[c] / fps, c) for c in range(cameras) if sent[c] < per_camera and sent[c] / fps <= now)[
            : settings.run.batch_size
        ]
        if not due:
            time.sleep(0.002)
            continue
        worst_lag = max(worst_lag, now - due[0][0])
        if worst_lag > GIVE_UP_S:
            break
        frames = []
        for _, camera in due:
            number = sent[camera]
            data = clip[(number + camera * 37) % len(clip)]
            frames.append(CameraFrame(f"cam{camera}", number, number / fps, decode_image(data)))
            sent[camera] += 1
        for result in pipeline.process(frames):
            for face in result.faces:
                tracked.place(face)
    wall = time.perf_counter() - started
    counters = pipeline.counters
    return {
        "frames": float(counters.frames),
        "fps": counters.frames / wall,
        "lag_s": worst_lag,
        "cpu": (time.process_time() - cpu_started) / wall,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "faces": float(counters.faces),
        "embedded": float(counters.embedded),
        "detected_frames": float(counters.detected_frames),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4, 6, 8])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of video per camera")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--video", type=Path, default=DATA / "videos" / "short_hamilton_clip.mp4")
    parser.add_argument("--one", nargs=2, metavar=("CAMERAS", "TRACKING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        figures = one(int(args.one[0]), args.one[1] == "on", args.seconds, args.fps, args.video)
        print(json.dumps(figures))
        return
    width, height = (int(v) for v in video_frames(args.video, 1)[0].shape[1::-1])
    print(f"{args.video.name} ({width}x{height}) at {args.fps:g} fps, {args.seconds:g} s per camera; this machine")
    print(
        f"{'tracking':>8} {'cameras':>7} {'real time':>9} {'frames/s':>8} {'worst lag s':>11} {'CPU':>5} "
        f"{'peak MiB':>8} {'detected':>8} {'embedded':>8}"
    )
    for tracking in ("on", "off"):
        for cameras in args.cameras:
            command = [sys.executable, "-m", "bench.cameras", "--one", str(cameras), tracking]
            command += ["--seconds", str(args.seconds), "--fps", str(args.fps), "--video", str(args.video)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            f = json.loads(out.strip().splitlines()[-1])
            keeps = "yes" if f["lag_s"] <= REAL_TIME_S else "no"
            print(
                f"{tracking:>8} {cameras:>7} {keeps:>9} {f['fps']:>8.1f} {f['lag_s']:>11.1f} {f['cpu']:>5.0%} "
                f"{f['rss_mib']:>8.0f} {f['detected_frames'] / f['frames']:>8.0%} "
                f"{f['embedded'] / max(f['faces'], 1):>8.1%}",
                flush=True,
            )
            if keeps == "no" and tracking == "off":
                break  # more cameras only fall further behind


if __name__ == "__main__":
    main()
