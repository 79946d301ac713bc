"""Secrets out of every output (the one helper that hides passwords in URLs and query strings), and in from files.

Every URL the project shows (logs, errors, readiness reasons, printed lines) goes through ``redact`` first,
and the log handler of the `facestream` command passes every record through it as well, so a password in a
Redis URL, an RTSP or HTTP stream URL or a librdkafka message never reaches stdout, stderr or a log pipeline.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

MASK = "***"

# scheme://user:password@host -> scheme://user:***@host (an empty user too: redis://:password@host).
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]*):(?P<secret>[^@/\s'\"]+)@")
# ?password=...&token=... in a query string or a key=value list (the names cameras and their vendors use).
_QUERY = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|pass|token|secret|access_token|auth|authorization|api_?key|apikey|key|"
    r"sig|signature|credentials?|session_?id|sid)=)[^&\s'\"]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it, and every password= value, replaced by ***."""
    return _QUERY.sub(rf"\g<head>{MASK}", _USERINFO.sub(rf"\g<head>:{MASK}@", text))


def read_secret(path: Path | None) -> str | None:
    """The secret in a file (a Docker or Kubernetes secret mount), without its final newline; None for no file."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read the secret file {path}: {exc.strerror}") from exc


class RedactingFilter(logging.Filter):
    """Redacts a log record's message and traceback before any formatter sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # formatters would render it again from the exception, unredacted
        return True
