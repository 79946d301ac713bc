"""Frame sources: a video file, an image folder, a camera index or a network stream; each iteration of a source
is one pass over a file or one connection to a live source (streaming/readers.py reconnects and runs many)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from streaming.decode import DEFAULT_MAX_PIXELS, DecodeFailure, ImageDecodeError, decode_image
from streaming.errors import StreamingError
from streaming.live_stream import StreamDroppedError, StreamTimeouts, Transport, stream_frames
from streaming.redact import redact

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"})
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def image_suffixes() -> frozenset[str]:
    return frozenset(Image.registered_extensions())


@dataclass(frozen=True)
class Frame:
    source: str  # camera id: a stable name of where the frame came from
    number: int  # position in the source, from 0
    timestamp: float  # seconds: position in a video file; Unix time for live streams and image files
    image: NDArray[np.uint8]  # BGR
    name: str | None = None  # the image file's path inside a folder source
    session: str | None = None  # the connection (or pass over a file) it came from; None: ids without one
    jpeg: bytes | None = None  # the image as the frames topic carries it, where its reader encoded it


@dataclass(frozen=True)
class BadInput:
    """A frame that could not be decoded; the run counts it and goes on."""

    source: str
    number: int
    reason: DecodeFailure
    detail: str
    name: str | None = None


SourceItem = Frame | BadInput


class SourceError(StreamingError, RuntimeError):
    """The source as a whole cannot be opened or read."""


class SourceDroppedError(SourceError):
    """A live source stopped giving frames, or could not be opened: the reader tries again after a wait."""


class FrameSource:
    """Frames of one source; ``total`` is known for files and folders, None for live streams."""

    def __init__(
        self,
        uri: str,
        camera: str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        *,
        timeouts: StreamTimeouts | None = None,
        transport: Transport = Transport.TCP,
    ) -> None:
        self.uri = uri
        self.max_pixels = max_pixels
        self.timeouts = timeouts or StreamTimeouts()
        self.transport = transport
        self.kind, self.camera = _classify(uri, camera)
        self._files: list[Path] = []
        if self.kind == "folder":
            self._files = folder_images(Path(uri))
        elif self.kind == "image":
            self._files = [Path(uri)]
        self.total, self.fps = self._probe()

    @property
    def live(self) -> bool:
        """A camera or a stream: it has no end, drops and comes back; files and folders end."""
        return self.kind in ("camera", "stream")

    def _probe(self) -> tuple[int | None, float | None]:
        """Frame count (None when unknown, as for live streams) and frames per second of a video file."""
        if self.kind in ("folder", "image"):
            return len(self._files), None
        if self.kind != "video":
            return None, None
        capture = cv2.VideoCapture(self.uri)
        try:
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = float(capture.get(cv2.CAP_PROP_FPS))
        finally:
            capture.release()
        return (count if count > 0 else None), (fps if 0 < fps < 1000 else None)

    def __iter__(self) -> Iterator[SourceItem]:
        return self.frames()

    def frames(
        self, session: str | None = None, max_size: int | None = None, on_stale: Callable[[int], None] | None = None
    ) -> Iterator[SourceItem]:
        """One pass over a file or folder, or one connection to a live source (its frames numbered from 0),
        each frame marked with ``session``. A live source raises SourceDroppedError when the connection ends.
        A stream's frames may come scaled down to ``max_size`` already (the reader scales the others), and it
        tells ``on_stale`` of frames it skipped because decoding fell behind the camera."""
        if self.kind in ("folder", "image"):
            return self._folder(session)
        if self.kind == "stream":
            return self._stream(session, max_size, on_stale)
        return self._capture(session)

    def _folder(self, session: str | None) -> Iterator[SourceItem]:
        for number, path in enumerate(self._files):
            name = str(path)
            try:
                data = path.read_bytes()
                image = decode_image(data, self.max_pixels)
            except ImageDecodeError as exc:
                yield BadInput(self.camera, number, exc.reason, str(exc), name)
                continue
            except OSError as exc:
                yield BadInput(self.camera, number, DecodeFailure.CORRUPT, f"cannot read: {exc}", name)
                continue
            yield Frame(self.camera, number, path.stat().st_mtime, image, name, session)

    def _stream(
        self, session: str | None, max_size: int | None, on_stale: Callable[[int], None] | None
    ) -> Iterator[SourceItem]:
        frames = stream_frames(self.uri, self.timeouts, self.transport, max_size, on_stale)
        try:
            for number, (image, timestamp) in enumerate(frames):
                yield Frame(self.camera, number, timestamp, image, session=session)
        except StreamDroppedError as exc:
            raise SourceDroppedError(str(exc)) from exc

    def _capture(self, session: str | None) -> Iterator[SourceItem]:
        target: str | int = int(self.uri) if self.kind == "camera" else self.uri
        capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            capture.release()
            if self.live:
                raise SourceDroppedError("cannot open: OpenCV found no camera at this index")
            raise SourceError(f"cannot open {self.kind} {redact(self.uri)!r}: OpenCV found no decodable video stream")
        try:
            number = 0
            while True:
                ok, image = capture.read()
                if not ok or image is None:
                    break
                timestamp = time.time() if self.live else float(capture.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
                yield Frame(self.camera, number, timestamp, _as_bgr8(image), session=session)
                number += 1
        finally:
            capture.release()
        if self.live:
            raise SourceDroppedError("the camera stopped giving frames")
        if number == 0:
            raise SourceError(f"{redact(self.uri)}: no frame could be decoded (corrupt or unsupported video)")


def _as_bgr8(image: NDArray[Any]) -> NDArray[np.uint8]:
    """OpenCV hands some streams over as grey, BGRA or 16-bit frames; the pipeline takes 8-bit BGR."""
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.asarray(image, dtype=np.uint8)


def folder_images(folder: Path) -> list[Path]:
    """Image files under a folder, recursively, in a stable order; hidden files skipped."""
    suffixes = image_suffixes()
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _classify(uri: str, camera: str | None) -> tuple[str, str]:
    if uri.isdigit():
        return "camera", camera or f"camera{uri}"
    if uri.lower().startswith(STREAM_SCHEMES):
        return "stream", camera or _stream_name(uri)
    path = Path(uri)
    if path.is_dir():
        return "folder", camera or path.resolve().name
    if path.is_file():
        return ("image" if path.suffix.lower() in image_suffixes() else "video"), camera or path.stem
    raise SourceError(f"source {redact(uri)!r} is not a folder, a file, a camera index or a stream URL")


def _location(uri: str) -> tuple[str, str, str, str] | None:
    """A URL's scheme, host, port and path: never its user, password, query or fragment (they may hold
    credentials); None for a URL that does not parse."""
    try:
        parts = urlsplit(uri)
        port = str(parts.port) if parts.port else ""
    except ValueError:
        return None
    return parts.scheme, parts.hostname or "", port, parts.path


def public_url(uri: str) -> str:
    """Where a stream is, fit to log."""
    location = _location(uri)
    if location is None:
        return "<a URL that does not parse>"
    scheme, host, port, path = location
    return f"{scheme}://{host}{':' + port if port else ''}{path}"


def _stream_name(uri: str) -> str:
    """A camera id from a stream URL's location (the camera id ends up in Kafka keys, face ids, Redis, events
    and metrics)."""
    location = _location(uri)
    if location is None:
        return "stream"
    _, host, port, path = location
    name = "_".join(part for part in (host, port, path.replace("/", "_")) if part)
    return "_".join(piece for piece in name.replace(":", "_").split("_") if piece) or "stream"
