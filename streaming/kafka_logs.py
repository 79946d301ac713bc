"""librdkafka's own log lines through the project's logger, at a bounded rate.

With a broker unreachable librdkafka logs a connection failure per broker and thread, tens of lines a second;
an operator needs to know it keeps happening, not each attempt. Every Kafka client of the project hands its
lines to the ``facestream.kafka`` logger (so they get the project's format, JSON included, and redaction),
which lets through at most ``LINES_PER_WINDOW`` lines every ``WINDOW_S`` seconds and then says how many it held back.
"""

from __future__ import annotations

import logging
import threading
import time

LINES_PER_WINDOW = 10
WINDOW_S = 30.0


class RateLimit(logging.Filter):
    """At most ``lines`` records per ``window_s``; the first record after a window says how many were dropped."""

    def __init__(self, lines: int = LINES_PER_WINDOW, window_s: float = WINDOW_S) -> None:
        super().__init__()
        self.lines, self.window_s = lines, window_s
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._passed = 0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._started >= self.window_s:
                if self._dropped:
                    record.msg = f"{record.getMessage()} ({self._dropped} more librdkafka lines held back before this)"
                    record.args = None
                self._started, self._passed, self._dropped = now, 0, 0
            if self._passed >= self.lines:
                self._dropped += 1
                return False
            self._passed += 1
            return True


def kafka_logger() -> logging.Logger:
    """The logger every Kafka client of the project is given (librdkafka's ``logger`` setting)."""
    logger = logging.getLogger("facestream.kafka")
    if not any(isinstance(f, RateLimit) for f in logger.filters):
        logger.addFilter(RateLimit())
    return logger
