"""Live camera servers on 127.0.0.1 for the tests: an HTTP MJPEG server (as many IP cameras serve) and Debian's
GStreamer RTSP server, each serving a clip's frames in a loop at a frame rate, with the faults of real cameras
(a stream that closes, one that hangs on an open socket, one that is gone)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

from tests.local_services import free_port
from tests.services import missing

BOUNDARY = "facestreamframe"


def clip_jpegs(video: Path, limit: int = 100, width: int | None = None) -> list[bytes]:
    """The first ``limit`` frames of a clip as JPEG, optionally scaled to ``width`` pixels across."""
    capture = cv2.VideoCapture(str(video))
    frames: list[bytes] = []
    try:
        while len(frames) < limit:
            ok, image = capture.read()
            if not ok:
                break
            if width is not None:
                height = round(image.shape[0] * width / image.shape[1])
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            encoded, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            assert encoded
            frames.append(bytes(data))
    finally:
        capture.release()
    assert frames, f"no frame decoded from {video}"
    return frames


@dataclass
class Behaviour:
    """What a path of the MJPEG server does: frames at ``fps``, closing after ``close_after_s`` seconds (None:
    never), hanging after ``hang_after`` frames (None: never), or refusing with 503 while ``down``."""

    frames: list[bytes]
    fps: float = 25.0
    close_after_s: float | None = None
    hang_after: int | None = None
    down: bool = False


class MjpegServer:
    """`multipart/x-mixed-replace` streams, one per path; counts requests per path."""

    def __init__(self) -> None:
        self.paths: dict[str, Behaviour] = {}
        self.requests: Counter[str] = Counter()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str, query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path}" + (f"?{query}" if query else "")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.lstrip("/").split("?", 1)[0]
                server.requests[path] += 1
                behaviour = server.paths.get(path)
                if behaviour is None or behaviour.down:
                    self.send_error(404 if behaviour is None else 503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                server._serve(self, behaviour)

        return Handler

    def _serve(self, handler: BaseHTTPRequestHandler, behaviour: Behaviour) -> None:
        start = time.monotonic()
        sent = 0
        try:
            while not self._stop.is_set():
                if behaviour.close_after_s is not None and time.monotonic() - start >= behaviour.close_after_s:
                    return
                if behaviour.hang_after is not None and sent >= behaviour.hang_after:
                    self._stop.wait(3600)  # silence on an open socket
                    return
                frame = behaviour.frames[sent % len(behaviour.frames)]
                part = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n".encode()
                    + frame
                    + b"\r\n"
                )
                handler.wfile.write(part)
                handler.wfile.flush()
                sent += 1
                due = start + sent / behaviour.fps
                self._stop.wait(max(0.0, due - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):
            return


@contextmanager
def mjpeg_server() -> Iterator[MjpegServer]:
    server = MjpegServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")


@contextmanager
def rtsp_server(frames_dir: Path, fps: int = 25, paths: tuple[str, ...] = ("cam",)) -> Iterator[str]:
    """Debian's GStreamer RTSP server (run by the system python3 with PyGObject), serving the JPEG files of
    ``frames_dir`` in a loop as RTP/JPEG at each path, over TCP or UDP as the client asks; yields its base URL."""
    python = shutil.which("python3", path="/usr/bin")
    if python is None or subprocess.run([python, "-c", "import gi"], capture_output=True).returncode:  # noqa: PLW1510
        missing("the system python3 with PyGObject (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    process = subprocess.Popen(
        [python, str(RTSP_SERVER), str(port), str(frames_dir), str(fps), *paths],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "ready" not in line:
            process.kill()
            rest = process.stdout.read()
            missing(f"the GStreamer RTSP server (gstreamer1.0-plugins-good, -bad): {line}{rest}")
        yield f"rtsp://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
