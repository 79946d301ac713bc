"""What a request to the identity API carries, read and checked: each refusal a RequestError with its HTTP
status and a message for the caller (workers/identity/identity_app.py answers them)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
from numpy.typing import NDArray

from clustering.redis_state.redis_records import Sighting
from clustering.store import ClusterSummary
from streaming.decode import ImageDecodeError, decode_image
from streaming.embeddings import EmbeddingValueError, unit_embedding
from streaming.messages import SPACE_PATTERN
from workers.errors import WorkerError
from workers.identity.openapi import MAX_PAGE_NUMBER


class RequestError(WorkerError, ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def identity_json(summary: ClusterSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "name": summary.name,
        "size": summary.size,
        "first_seen": summary.first_seen,
        "last_seen": summary.last_seen,
        "cameras": list(summary.cameras),
        "representatives": [face_id for _, face_id in summary.representatives],
    }


def sighting_json(sighting: Sighting) -> dict[str, Any]:
    """An appearance as the API answers it: the timeline's record as it is (openapi.Appearance)."""
    return asdict(sighting)


def request_embedding(value: object, dimension: int) -> NDArray[np.float32]:
    """A unit vector from a JSON list of floats or base64 little-endian float32."""
    try:
        if isinstance(value, str):
            vector = np.frombuffer(base64.b64decode(value, validate=True), "<f4").astype(np.float32)
        elif isinstance(value, list):
            with np.errstate(over="ignore"):  # a value past float32's range becomes inf, refused below
                vector = np.asarray(value, dtype=np.float32)
        else:
            raise RequestError(400, "embedding: a list of floats or base64 of little-endian float32")
    except (binascii.Error, ValueError, TypeError) as exc:
        raise RequestError(400, f"embedding: {exc}") from exc
    if vector.shape != (dimension,):
        raise RequestError(400, f"embedding: {dimension} values expected, not {vector.size}")
    try:
        return unit_embedding(vector)
    except EmbeddingValueError as exc:
        raise RequestError(400, f"embedding {exc}: a finite, non-zero vector is expected") from exc


#: The largest photo searched: a 6000x4000 camera's; decoding it peaks near 300 MB, one at a time.
MAX_SEARCH_PIXELS = 24_000_000


def request_image(value: object) -> NDArray[np.uint8]:
    """Pixels from base64 of an encoded image; a bad one is a 400 with the decoder's reason."""
    if not isinstance(value, str):
        raise RequestError(400, "image: base64 of an encoded image (JPEG, PNG, ...)")
    try:
        encoded = base64.b64decode(value, validate=True)
    except ValueError as exc:  # binascii.Error, or characters that are not ASCII
        raise RequestError(400, f"image: not base64: {exc}") from exc
    try:
        return decode_image(encoded, MAX_SEARCH_PIXELS)
    except ImageDecodeError as exc:
        raise RequestError(400, f"image: {exc}") from exc


def not_the_writer(space: str) -> RequestError:
    return RequestError(409, f"this worker does not write space {space}: search on its writer")


def request_space(space: str) -> str:
    """The space a path names, checked as the contracts check it (it names Redis keys)."""
    if not re.fullmatch(SPACE_PATTERN, space):
        raise RequestError(400, "a space name is 1 to 100 characters without braces, colons or white space")
    return space


def query_number(query: Mapping[str, list[str]], name: str, default: int) -> int:
    raw = query.get(name, [str(default)])[0]
    if not raw.isdigit() or int(raw) > MAX_PAGE_NUMBER:
        raise RequestError(400, f"{name} is an integer from 0 to {MAX_PAGE_NUMBER}")
    return int(raw)
