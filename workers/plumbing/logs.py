"""Log set-up of the `facestream` command: readable text, or one JSON object per line for log pipelines.

Errors about a Kafka message carry ``topic``, ``partition`` and ``offset`` as fields (``extra=``), which the
JSON format keeps as keys and the text format shows in the message itself.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

from streaming.redact import RedactingFilter

_HANDLER_NAME = "facestream"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(verbose: bool = False, log_format: Literal["text", "json"] = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactingFilter())  # no password of any URL reaches a log line
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)  # called again (e.g. once the worker's settings are read): replace, not add
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
