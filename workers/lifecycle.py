"""Process lifecycle: signals only set a stop flag; the loops that own resources check it."""

from __future__ import annotations

import logging
import signal
import threading
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
