"""Dead letters that always fit the topic: the original record when it fits, else a prefix with its size and
sha256, so that refusing a record can never fail for the refusal's own size."""

from __future__ import annotations

import base64
import hashlib
from enum import StrEnum
from typing import Literal

from confluent_kafka import Message

from streaming.messages import DeadLetter

#: Room left in a record for what is not the dead letter's JSON value: Kafka's record overhead and the key.
RECORD_OVERHEAD = 4096
#: The most of a key or of one header's value kept; the rest is cut (frame headers are a few bytes each).
KEPT_FIELD_BYTES = 1024
#: Headers kept from a record: more than any contract has.
KEPT_HEADERS = 32


class StageFailure(StrEnum):
    """Why a record that passed its contract was refused anyway."""

    PROCESSING_FAILED = "processing_failed"
    CRASHED_WORKER = "crashed_worker"
    OUTPUT_TOO_LARGE = "output_too_large"


def dead_letter(
    message: Message, stage: Literal["embed", "cluster"], reason: str, error: Exception, max_bytes: int
) -> DeadLetter:
    """A dead letter of ``message`` whose JSON is at most ``max_bytes - RECORD_OVERHEAD`` bytes.

    Key and header values are cut at ``KEPT_FIELD_BYTES``; the value is kept whole when it fits, else its first
    bytes, with ``value_truncated`` set. ``value_bytes`` and ``value_sha256`` always describe the whole value.
    """
    value = message.value()
    letter = DeadLetter(
        stage=stage,
        reason=reason,
        error_class=type(error).__name__,
        error_message=str(error)[:2000],
        topic=(message.topic() or "")[:KEPT_FIELD_BYTES],
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=DeadLetter.b64(_cut(message.key())),
        headers=_kept_headers(message),
        value_bytes=None if value is None else len(value),
        value_sha256=None if value is None else hashlib.sha256(value).hexdigest(),
    )
    if value is None:
        return letter
    room = max_bytes - RECORD_OVERHEAD - len(letter.to_json()) - len('"value":"",,"value_truncated":true')
    kept = value if _b64_size(len(value)) <= room else value[: max(0, room) // 4 * 3]
    return letter.model_copy(update={"value": DeadLetter.b64(kept), "value_truncated": len(kept) < len(value)})


def letter_key(message: Message) -> bytes | None:
    """The key a dead letter is produced with: the original one, cut like the copy it holds."""
    return _cut(message.key())


def _kept_headers(message: Message) -> list[tuple[str, str]]:
    headers = message.headers() or []
    pairs = list(headers.items() if isinstance(headers, dict) else headers)[:KEPT_HEADERS]
    kept = []
    for name, value in pairs:
        raw = value if isinstance(value, bytes) else str(value or "").encode()
        kept.append((str(name)[:KEPT_FIELD_BYTES], base64.b64encode(raw[:KEPT_FIELD_BYTES]).decode()))
    return kept


def _cut(data: bytes | None) -> bytes | None:
    return None if data is None else data[:KEPT_FIELD_BYTES]


def _b64_size(size: int) -> int:
    return (size + 2) // 3 * 4
