"""Every source at once: one reader thread per source, each at its own pace, merged into one stream of frames.

A reader owns its source's connection: it opens it, reads it, and when a live source drops (closed, silent
past the read timeout, refused) it waits with capped exponential backoff and connects again, forever unless
told to give up after some tries. Every connection (and every pass over a file, where asked) starts a new
session, so ids of faces and tracks never collide with an earlier connection's. A live reader keeps only the
newest frames waiting: when the consumer falls behind, the oldest are dropped and counted (live means now);
a file's reader waits instead, and nothing of a file is dropped.

Frames are scaled down at the edge (``max_size``, the long side, aspect kept) and thinned (``every``,
``max_fps``) in the reader, before they are queued. Unpaced files are merged one frame from each in turn, so
a run over files gives the same order, and the same clusters, every time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from numpy.typing import NDArray

from streaming.frame_headers import new_session
from streaming.jpeg import FrameTooLargeError, encode_jpeg
from streaming.live_stream import fitted_size
from streaming.read_policy import CameraStatus, ReaderState, ReadPolicy, backoff_s
from streaming.sources import Frame, FrameSource, SourceDroppedError, SourceError, SourceItem, public_url

log = logging.getLogger(__name__)


def scaled(image: NDArray[np.uint8], max_size: int | None) -> NDArray[np.uint8]:
    """The image with its long side at most ``max_size`` pixels, aspect kept (None or 0: as it is)."""
    size = fitted_size(image.shape[1], image.shape[0], max_size)
    if size is None:
        return image
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


class _Reader:
    """One source's thread: connect, read, thin and scale, queue; reconnect after a drop."""

    def __init__(self, source: FrameSource, policy: ReadPolicy, stop: threading.Event, ready: threading.Condition):
        self.source, self.policy, self._stop, self._ready = source, policy, stop, ready
        self.status = CameraStatus(source.camera, source.live)
        self.queue: deque[SourceItem] = deque()
        self.done = False
        #: Merged strictly in turn: an unpaced file, whose next frame is always moments away.
        self.strict = not source.live and policy.pace is None
        self.thread = threading.Thread(target=self._run, name=f"reader-{source.camera}", daemon=True)

    def _run(self) -> None:
        failures = 0
        if self.source.kind == "stream":
            log.info("camera %s: reading %s", self.source.camera, public_url(self.source.uri))
        try:
            while not self._stop.is_set():
                live = self.source.live
                session = new_session() if live or self.policy.file_sessions else None
                try:
                    delivered = self._connection(session)
                    if not live:
                        self.status.state = ReaderState.ENDED
                        return
                    reason = "the stream ended"
                except SourceDroppedError as exc:
                    delivered, reason = self.status.session == session, str(exc)
                except SourceError as exc:  # a file that cannot be read: no retry helps
                    self._fail(str(exc))
                    return
                failures = 1 if delivered else failures + 1
                if not self._retry(failures, reason):
                    return
        except Exception as exc:  # a decoder's surprise or a bug: this source is given up, loudly, not the rest
            self.status.state, self.status.error = ReaderState.FAILED, f"reader failed: {exc!r}"
            log.exception("camera %s: reader failed", self.source.camera)
        finally:
            with self._ready:
                self.done = True
                self._ready.notify_all()

    def _retry(self, failures: int, reason: str) -> bool:
        """Waits before the next connection; False when the source is given up (or the reader stopped)."""
        retries = self.policy.max_retries
        if self._stop.is_set():
            return False
        if retries is not None and failures > retries:
            self._fail(f"gave up after {retries} reconnection(s): {reason}")
            return False
        wait = backoff_s(failures, self.policy.backoff_first_s, self.policy.backoff_max_s)
        self.status.state, self.status.error = ReaderState.RECONNECTING, reason
        self.status.drops += failures == 1
        log.warning("camera %s: %s; reconnecting in %.1f s (try %d)", self.source.camera, reason, wait, failures)
        self._stop.wait(wait)
        return not self._stop.is_set()

    def _fail(self, reason: str) -> None:
        self.status.state, self.status.error = ReaderState.FAILED, reason
        log.error("camera %s: %s", self.source.camera, reason)

    def _connection(self, session: str | None) -> bool:
        """Reads one connection (or pass) to its end; whether it delivered a frame."""
        started = time.monotonic()
        last_kept: list[float] = []  # timestamp of the last frame kept, for max_fps
        delivered = False
        for item in self.source.frames(session, self.policy.max_size, self._skipped):
            if self._stop.is_set():
                break
            if isinstance(item, Frame):
                if not delivered:
                    delivered = True
                    self._connected(session, started)
                kept = self._thinned(item, last_kept)
                if kept is None:
                    continue
                if self.policy.pace:
                    self._stop.wait(max(0.0, started + item.number / self.policy.pace - time.monotonic()))
                self._put(kept)
            else:
                self._put(item)
        return delivered

    def _skipped(self, count: int) -> None:
        """Frames the stream skipped undecoded: decoding fell behind the camera."""
        self.status.dropped_stale += count

    def _thinned(self, frame: Frame, last_kept: list[float]) -> Frame | None:
        """The frame as it is queued (scaled), or None where ``every`` or ``max_fps`` leave it out."""
        policy, status = self.policy, self.status
        status.last_frame = time.monotonic()
        status.frames += 1
        if frame.number % policy.every:
            return None
        if policy.max_fps and last_kept and frame.timestamp - last_kept[0] < 0.999 / policy.max_fps:
            status.dropped_rate += 1
            return None
        last_kept[:] = [frame.timestamp]
        image = scaled(frame.image, policy.max_size)
        if policy.jpeg:
            try:
                return replace(frame, image=image, jpeg=encode_jpeg(image))
            except FrameTooLargeError:
                pass  # left to the producer, which skips and counts it
        return frame if image is frame.image else replace(frame, image=image)

    def _connected(self, session: str | None, started: float) -> None:
        status = self.status
        status.connections += 1
        if status.connections > 1 and self.source.live:
            log.info(
                "camera %s: reconnected (session %s, %.1f s to the first frame)",
                status.camera,
                session,
                time.monotonic() - started,
            )
        elif self.source.live:
            log.info("camera %s: connected (session %s)", status.camera, session)
        status.state, status.session, status.error = ReaderState.CONNECTED, session, None

    def _put(self, item: SourceItem) -> None:
        with self._ready:
            if self.source.live:
                if len(self.queue) >= self.policy.live_queue:
                    self.queue.popleft()  # stale: a newer frame of the camera is here
                    self.status.dropped_stale += 1
            else:
                while len(self.queue) >= self.policy.file_queue and not self._stop.is_set():
                    self._ready.wait(0.1)
            self.queue.append(item)
            self._ready.notify_all()


@dataclass
class Readers:
    """All sources read at once; iterate ``items()`` for their frames, merged, and close when done."""

    sources: Sequence[tuple[FrameSource, ReadPolicy]]
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        cameras = [source.camera for source, _ in self.sources]
        repeated = sorted({camera for camera in cameras if cameras.count(camera) > 1})
        if repeated:
            raise SourceError(
                f"camera id(s) {repeated} name more than one source: give each its own (--camera, a camera list)"
            )
        self._readers = [_Reader(source, policy, self._stop, self._ready) for source, policy in self.sources]

    def start(self) -> Readers:
        for reader in self._readers:
            reader.thread.start()
        return self

    @property
    def live(self) -> bool:
        """Whether a source is live (its frames come when they come, not when asked for)."""
        return any(reader.source.live for reader in self._readers)

    @property
    def statuses(self) -> list[CameraStatus]:
        return [reader.status for reader in self._readers]

    def failed(self) -> list[CameraStatus]:
        """Sources given up: unreadable files, live sources past their retries."""
        return [status for status in self.statuses if status.state is ReaderState.FAILED]

    def items(self, idle_s: float = 0.1) -> Iterator[SourceItem | None]:
        """Frames and bad inputs of every source as they come, until all have ended or ``close``; None after
        ``idle_s`` with nothing to give, so that the caller can flush a batch or see a stop flag."""
        turn = 0
        while not self._stop.is_set():
            with self._ready:
                item, turn = self._next(turn)
                if item is None:
                    if all(reader.done and not reader.queue for reader in self._readers):
                        return
                    self._ready.wait(idle_s)
                    item, turn = self._next(turn)
                if item is not None:
                    self._ready.notify_all()  # a file's reader may wait for room
            yield item

    def _next(self, turn: int) -> tuple[SourceItem | None, int]:
        """The next item in turn: an unpaced file is waited for (a fixed order), others are skipped if empty."""
        count = len(self._readers)
        for step in range(count):
            reader = self._readers[(turn + step) % count]
            if reader.queue:
                return reader.queue.popleft(), (turn + step + 1) % count
            if reader.strict and not reader.done:
                return None, (turn + step) % count
        return None, turn

    def close(self, wait_s: float = 0.5) -> None:
        """Stops every reader; waits at most ``wait_s`` in all (a reader inside a hung read is left to its
        read timeout: it is a daemon thread and drops its connection when it wakes)."""
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        deadline = time.monotonic() + wait_s
        for reader in self._readers:
            reader.thread.join(max(0.0, deadline - time.monotonic()))
