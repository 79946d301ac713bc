"""One connection to a network camera (RTSP, HTTP MJPEG, RTMP, ...) through FFmpeg's libraries (PyAV).

PyAV rather than OpenCV's VideoCapture for live sources: FFmpeg's open and read timeouts per connection
(OpenCV's FFmpeg backend waits 30 s on a silent socket), RTSP transport and other demuxer options per
camera (OpenCV takes them from one process-wide environment variable), and FFmpeg's calls run without the
GIL, so one hung camera never holds up the others. Video files and camera indexes stay on OpenCV.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import av
import numpy as np
from av.error import FFmpegError
from numpy.typing import NDArray

from streaming.redact import redact


class Transport(StrEnum):
    """How RTSP media travels: TCP (interleaved, through any firewall, the default) or UDP (less delay)."""

    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True)
class StreamTimeouts:
    open_s: float = 10.0  # connect and read the stream's headers
    read_s: float = 5.0  # longest silence on an open stream before it counts as dropped


class StreamDroppedError(RuntimeError):
    """The stream could not be opened, or stopped giving frames (closed, silent past the read timeout)."""


def fitted_size(width: int, height: int, max_size: int | None) -> tuple[int, int] | None:
    """(width, height) with the long side at most ``max_size``, aspect kept; None when it fits already."""
    if not max_size or max(width, height) <= max_size:
        return None
    ratio = max_size / max(width, height)
    return max(1, round(width * ratio)), max(1, round(height * ratio))


def stream_frames(
    url: str, timeouts: StreamTimeouts, transport: Transport = Transport.TCP, max_size: int | None = None
) -> Iterator[tuple[NDArray[np.uint8], float]]:
    """BGR frames of the stream with their arrival time (Unix seconds), until it drops: raises StreamDroppedError
    with the reason (credentials redacted). Stopping the iteration closes the connection. Frames larger than
    ``max_size`` are scaled down in FFmpeg's colour conversion, in the same pass (40% less CPU a 1080p frame
    than converting at full size and resizing after)."""
    options = {"rtsp_transport": transport.value} if url.lower().startswith(("rtsp://", "rtsps://")) else {}
    try:
        container = av.open(url, options=options, timeout=(timeouts.open_s, timeouts.read_s))
    except (FFmpegError, OSError) as exc:
        raise StreamDroppedError(f"cannot open: {_why(exc, url)}") from exc
    try:
        if not container.streams.video:
            raise StreamDroppedError("the stream has no video")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # decode slices or frames on several cores where the codec can
        try:
            for frame in container.decode(stream):
                size = fitted_size(frame.width, frame.height, max_size)
                if size is not None:
                    frame = frame.reformat(size[0], size[1], "bgr24", interpolation="AREA")  # noqa: PLW2901
                yield np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8), time.time()
        except (FFmpegError, OSError) as exc:
            raise StreamDroppedError(_why(exc, url)) from exc
        raise StreamDroppedError("the stream ended")
    finally:
        container.close()


def _why(exc: BaseException, url: str) -> str:
    """FFmpeg's reason, without the URL it appends (the URL may hold credentials)."""
    if isinstance(exc, av.ExitError):  # FFmpeg's interrupt: PyAV's timeout ran out
        return "timed out"
    if isinstance(exc, OSError) and exc.errno == errno.EIO:
        return "the connection closed"
    text = getattr(exc, "strerror", None) or str(exc)
    return redact(text.replace(url, "<url>"))
