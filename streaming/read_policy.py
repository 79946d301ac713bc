"""How a source is read (its limits, its reconnection policy) and what an operator sees of each reader."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class ReadPolicy:
    """How a source is read. ``pace``: replay a file at this many frames per second (None: as fast as taken);
    ``max_retries``: reconnections of a live source before it is given up (None: forever)."""

    max_size: int | None = None
    max_fps: float | None = None
    every: int = 1
    pace: float | None = None
    backoff_first_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retries: int | None = None
    live_queue: int = 2
    file_queue: int = 8
    #: A session for every pass over a file too (a producer: each run of it is new to the stages after it);
    #: False keeps a file's ids the same from run to run (`facestream run`, whose corrections name them).
    file_sessions: bool = True
    #: Encode each kept frame as JPEG in its reader's thread (a producer: the cameras' encoding then runs on
    #: every core, not one after another in the thread that sends).
    jpeg: bool = False


class ReaderState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    ENDED = "ended"  # a file or folder read to its end
    FAILED = "failed"  # given up: an unreadable file, or a live source past its retries


@dataclass
class CameraStatus:
    """What an operator sees of one source (readiness, logs, the producer's metrics)."""

    camera: str
    live: bool
    state: ReaderState = ReaderState.CONNECTING
    session: str | None = None
    connections: int = 0
    drops: int = 0
    frames: int = 0
    dropped_stale: int = 0
    dropped_rate: int = 0
    last_frame: float | None = None  # time.monotonic() of the newest frame read
    error: str | None = None


def backoff_s(failures: int, first_s: float, cap_s: float) -> float:
    """The wait before the ``failures``-th retry in a row: first_s, 2 first_s, 4 first_s, ... at most cap_s."""
    return float(min(cap_s, first_s * 2 ** max(0, failures - 1)))
