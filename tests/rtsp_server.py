"""An RTSP server for the tests: Debian's GStreamer RTSP server serving a folder of JPEG frames in a loop as
RTP/JPEG, over TCP or UDP as each client asks. Run by the system python3 (PyGObject), not the project's:

    /usr/bin/python3 tests/rtsp_server.py PORT FRAMES_DIR FPS PATH [PATH ...]

Prints "ready" once it listens; SIGTERM stops it.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, frames, fps, *paths = sys.argv[1:]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    location = str(Path(frames) / "%05d.jpg")
    for path in paths:
        factory = GstRtspServer.RTSPMediaFactory()
        # Every client gets the stream from its first frame: a reconnect is a new session of the camera.
        factory.set_launch(
            f'( multifilesrc location="{location}" loop=true caps="image/jpeg,framerate={fps}/1" '
            "! jpegparse ! rtpjpegpay name=pay0 pt=26 )"
        )
        factory.set_shared(False)
        server.get_mount_points().add_factory(f"/{path}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
