"""How many cameras one process keeps up with: N cameras paced at their frame rate through the face pipeline.

Three cases: "tv", a talk-show clip (cuts, faces in view nearly all the time) at 25 fps; "fixed", a fixed camera
in a corridor (people walk up to it and stand) at 15 fps; and "empty", a fixed camera that sees nobody (a still
room of the corridor clip's size with 2 levels of sensor noise, made here: the clips have no empty stretch), at
15 fps. Each camera is the clip looped from its own offset, JPEG-encoded once (the frames topic carries JPEG),
and decoded as the embed worker does (a grey copy at 1/8 for every frame, whole only for the detector). The
fixed camera's clip (3.4 s) plays forward then backward: a loop that jumps back to its start would end every
track each time, which a fixed camera never does, and each new track pays for its first embeddings again. Frames
become due at the camera's rate; each turn takes the frames due (up to the batch size) and runs them through
decode, the pipeline and clustering. A configuration keeps real time when the oldest frame still waiting is
never more than a second late; one that falls ten seconds behind is stopped. Each configuration runs in a fresh
process, so the peak RSS is its own; tracking on and off run in the same invocation. Per step, the milliseconds
of one process's time per frame (the steps of a batch run one after another): decode, motion (cuts, motion and
which frames to detect), track, detect, align (crops and quality), embed and cluster. With ``--processes P``
the cameras are shared by P such processes running at once, as a machine running P embed workers shares them:
their frames, CPU and peak memory are summed, their worst lag is the configuration's.

    uv run python -m bench.cameras [--case tv|fixed|empty|all] [--cameras 1 2 4 6 8] [--seconds 20] [--fps 25]
                                   [--video PATH] [--tracking on off] [--processes 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.common import DATA, video_frames
from clustering.engine import OnlineRankOrder
from models.analyzer import FaceAnalyzer
from models.frames import CameraFrame
from models.pipeline import FacePipeline
from streaming.decode import decode_image
from workers.plumbing.encoded_picture import EncodedPicture
from workers.plumbing.faces import TrackedFaces
from workers.settings import Settings

GIVE_UP_S = 10.0
REAL_TIME_S = 1.0
STEPS = ("decode", "motion", "track", "detect", "align", "embed", "cluster")
#: How a case's frames are made from its clip (looped, played forward then backward, or nobody in view), as
#: its table's title says it.
PLAYED = {"loop": "", "ping_pong": ", played forward then backward", "empty": ", nobody in view (a still room)"}
#: The cases: (clip, frames per second, cameras tried, play).
CASES = {
    "tv": ("short_hamilton_clip.mp4", 25.0, [1, 2, 4, 6, 8, 10], "loop"),
    "fixed": ("intel_face-demographics-walking-and-pause.mp4", 15.0, [5, 10, 20, 30], "ping_pong"),
    "empty": ("intel_face-demographics-walking-and-pause.mp4", 15.0, [30, 60, 100], "empty"),
}


def clip_of(video: Path, play: str) -> list[bytes]:
    """The JPEG frames a camera loops: the clip's, or for "empty" a still room of the clip's size with sensor
    noise (2 levels) in each frame and nobody in it, what a fixed camera sees most of the night."""
    if play == "empty":
        height, width = video_frames(video, 1)[0].shape[:2]
        rng = np.random.default_rng(0)
        room = np.broadcast_to(np.linspace(60, 190, width, dtype=np.float32)[None, :, None], (height, width, 3))
        decoded = [np.clip(room + rng.normal(0, 2.0, room.shape), 0, 255).astype(np.uint8) for _ in range(45)]
    else:
        decoded = video_frames(video)
    if play == "ping_pong":  # forward then backward: the loop has no jump (a jump ends every track of the camera)
        decoded = decoded + decoded[-2:0:-1]
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in decoded]


def one(
    cameras: int, tracking: bool, seconds: float, fps: float, video: Path, *, play: str, first: int = 0
) -> dict[str, float]:
    """One process's figures for ``cameras`` cameras, numbered from ``first`` (each starts its clip elsewhere)."""
    settings = Settings()  # FACESTREAM_TRACKING__... and FACESTREAM_MODELS__... variables apply, to try others
    settings = settings.model_copy(update={"tracking": settings.tracking.model_copy(update={"enabled": tracking})})
    runtime = settings.models.runtime.model_copy(update={"providers": ("CPUExecutionProvider",)})
    models = settings.models.model_copy(update={"runtime": runtime})
    analyzer = FaceAnalyzer.from_settings(models)
    pipeline = FacePipeline(analyzer, settings.tracking)
    engine = OnlineRankOrder(analyzer.embedder.dimension, settings.clustering)
    tracked = TrackedFaces(engine)
    clip = clip_of(video, play)  # held as JPEG only, as a camera's frames are
    analyzer.detector.detect([decode_image(clip[0])])  # load the models before the clock starts
    analyzer.timings.seconds.clear()
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
            data = clip[(number + (first + camera) * 37) % len(clip)]
            with analyzer.timings.stage("decode"):
                picture = EncodedPicture(data)  # as the embed worker does: whole only where detected
            frames.append(CameraFrame(f"cam{first + camera}", number, number / fps, picture))
            sent[camera] += 1
        results = pipeline.process(frames)
        with analyzer.timings.stage("cluster"):
            for result in results:
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
        **{f"ms_{step}": analyzer.timings.seconds[step] * 1000 / max(counters.frames, 1) for step in STEPS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--cameras", type=int, nargs="+", help="default: the case's")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of video per camera")
    parser.add_argument("--fps", type=float, help="default: the case's")
    parser.add_argument("--video", type=Path, help="another clip (default: the case's)")
    parser.add_argument("--tracking", nargs="+", choices=["on", "off"], default=["on", "off"])
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes sharing the cameras, as a machine runs several embed workers (each with "
        "cores/processes onnxruntime threads unless FACESTREAM_MODELS__RUNTIME__INTRA_OP_THREADS says)",
    )
    parser.add_argument("--one", nargs=3, metavar=("CAMERAS", "TRACKING", "FIRST"), help=argparse.SUPPRESS)
    parser.add_argument("--play", choices=list(PLAYED), default="loop", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        count, tracking, first = int(args.one[0]), args.one[1] == "on", int(args.one[2])
        figures = one(count, tracking, args.seconds, args.fps, args.video, play=args.play, first=first)
        print(json.dumps(figures))
        return
    for case in CASES if args.case == "all" else [args.case]:
        name, fps, cameras, play = CASES[case]
        video = args.video or DATA / "videos" / name
        runs = Runs(video, args.fps or fps, args.seconds, play, args.processes)
        _table(runs, args.cameras or cameras, args.tracking)


@dataclass(frozen=True)
class Runs:
    """How each configuration runs: the clip, its rate and play, and the processes sharing its cameras."""

    video: Path
    fps: float
    seconds: float
    play: str
    processes: int

    def figures(self, cameras: int, tracking: str) -> dict[str, float]:
        """The configuration's figures: of its one process, or of its processes together (frames, CPU and
        memory summed, the worst lag of any, times a frame and shares averaged over their frames)."""
        shares = [cameras // self.processes + (p < cameras % self.processes) for p in range(self.processes)]
        environment = dict(os.environ)
        if self.processes > 1:
            threads = str(max(1, len(os.sched_getaffinity(0)) // self.processes))
            environment.setdefault("FACESTREAM_MODELS__RUNTIME__INTRA_OP_THREADS", threads)
        running = []
        for p, share in enumerate(shares):
            command = [sys.executable, "-m", "bench.cameras", "--one", str(share), tracking, str(sum(shares[:p]))]
            command += ["--seconds", str(self.seconds), "--fps", str(self.fps), "--video", str(self.video)]
            command += ["--play", self.play]
            running.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment))
        parts = []
        for process in running:
            out, _ = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"a bench process failed with status {process.returncode}")
            parts.append(json.loads(out.strip().splitlines()[-1]))
        return _together(parts)


def _together(parts: list[dict[str, float]]) -> dict[str, float]:
    frames = sum(f["frames"] for f in parts)
    total = {key: sum(f[key] for f in parts) for key in ("frames", "fps", "cpu", "rss_mib", "faces", "embedded")}
    total["detected_frames"] = sum(f["detected_frames"] for f in parts)
    total["lag_s"] = max(f["lag_s"] for f in parts)
    for step in STEPS:
        total[f"ms_{step}"] = sum(f[f"ms_{step}"] * f["frames"] for f in parts) / max(frames, 1)
    return total


def _table(runs: Runs, cameras_tried: list[int], tracking_modes: list[str]) -> None:
    width, height = (int(v) for v in video_frames(runs.video, 1)[0].shape[1::-1])
    processes = f", {runs.processes} processes" if runs.processes > 1 else ""
    print(
        f"{runs.video.name} ({width}x{height}) at {runs.fps:g} fps{PLAYED[runs.play]}, {runs.seconds:g} s per "
        f"camera{processes}; this machine"
    )
    steps = "".join(f"{step:>8}" for step in STEPS)
    print(
        f"{'tracking':>8} {'cameras':>7} {'real time':>9} {'frames/s':>8} {'worst lag s':>11} {'CPU':>5} "
        f"{'peak MiB':>8} {'detected':>8} {'embedded':>8}   ms a frame:{steps}"
    )
    for tracking in tracking_modes:
        for cameras in cameras_tried:
            f = runs.figures(cameras, tracking)
            keeps = "yes" if f["lag_s"] <= REAL_TIME_S else "no"
            per_step = "".join(f"{f[f'ms_{step}']:>8.2f}" for step in STEPS)
            print(
                f"{tracking:>8} {cameras:>7} {keeps:>9} {f['fps']:>8.1f} {f['lag_s']:>11.1f} {f['cpu']:>5.0%} "
                f"{f['rss_mib']:>8.0f} {f['detected_frames'] / f['frames']:>8.0%} "
                f"{f['embedded'] / max(f['faces'], 1):>8.1%}              {per_step}",
                flush=True,
            )
            if keeps == "no":
                break  # more cameras only fall further behind


if __name__ == "__main__":
    main()
