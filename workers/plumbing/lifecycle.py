"""Process lifecycle: signals only set a stop flag; the loops that own resources check it."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)


class StopFlag:
    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def install(self, *signals: signal.Signals) -> None:
        """The first signal asks for a clean stop; a second one interrupts at once."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            if self._event.is_set():
                signal.default_int_handler(signum, _frame)
            log.warning("received %s: finishing the current batch, then writing outputs", signal.Signals(signum).name)
            self._event.set()

        for sig in signals or (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)


def pause(should_stop: Callable[[], bool], seconds: float) -> None:
    """Sleeps up to ``seconds``, waking within a tenth of a second once ``should_stop()`` is true."""
    deadline = time.monotonic() + seconds
    while not should_stop() and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))


class Backoff:
    """Exponential waits between retries, capped: 0.5 s, 1 s, 2 s, ... ``cap_s``; reset after a success."""

    def __init__(self, cap_s: float, first_s: float = 0.5) -> None:
        self.cap_s, self.first_s = cap_s, first_s
        self.failures = 0

    def next(self) -> float:
        self.failures += 1
        return float(min(self.cap_s, self.first_s * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0
