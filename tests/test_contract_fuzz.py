"""Property-based tests of everything a topic can hand a stage: frame headers, image bytes, faces-topic records
and commands. Whatever the bytes, each parser returns a valid value or raises its one typed error; nothing
else escapes to stop a stage. Derandomized, so that CI runs the same examples every time."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from streaming.commands import parse_cluster_input, parse_command
from streaming.decode import ImageDecodeError, decode_image
from streaming.frame_headers import FrameHeaders
from streaming.messages import MessageError, parse_faces_topic
from tests.streams import synthetic_faces

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADER_NAMES = st.sampled_from(["version", "camera", "session", "frame", "timestamp", "space", "other"])
HEADER_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.text(max_size=40),
    st.sampled_from(["1", "2", "0", "-1", "nan", "inf", "1e308", "9" * 30, "cam", "a b", "{x}", "ab12cd34-wxyz"]),
)


@FUZZ
@given(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=10))
def test_frame_headers_parse_or_raise_a_message_error(headers: list[tuple[str, Any]]) -> None:
    try:
        parsed = FrameHeaders.from_kafka(headers)
    except MessageError:
        return
    assert parsed.frame >= 0
    assert np.isfinite(parsed.timestamp)


def _encoded(kind: str) -> bytes:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


VALID_IMAGES = [_encoded(kind) for kind in ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")]


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_IMAGES)))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@FUZZ
@given(st.one_of(st.binary(max_size=2000), damaged_images()))
def test_image_bytes_decode_or_raise_an_image_decode_error(data: bytes) -> None:
    try:
        image = decode_image(data, max_pixels=1_000_000)
    except ImageDecodeError:
        return
    assert image.dtype == np.uint8
    assert image.ndim == 3
    assert image.shape[2] == 3


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FACE = json.loads(synthetic_faces(1, identities=1, space="s")[0].to_json())
COMMAND = {"type": "forget", "version": 1, "command_id": "c-1", "space": "s", "faces": ["cam:1:0"]}


@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    """A valid face or command with some fields replaced by any JSON value, dropped, or added."""
    record = dict(draw(st.sampled_from([FACE, COMMAND])))
    for name in draw(st.lists(st.sampled_from([*record, "extra"]), max_size=3)):
        if draw(st.booleans()):
            record[name] = draw(JSON_VALUES)
        else:
            record.pop(name, None)
    return json.dumps(record, allow_nan=True).encode()


RECORDS = st.one_of(st.binary(max_size=200), JSON_VALUES.map(lambda v: json.dumps(v).encode()), mutated_records())


@FUZZ
@given(RECORDS)
def test_faces_topic_records_parse_or_raise_a_message_error(data: bytes) -> None:
    for parse in (parse_faces_topic, parse_cluster_input):
        with contextlib.suppress(MessageError):
            parse(data)


@FUZZ
@given(RECORDS)
def test_commands_parse_or_raise_a_message_error(data: bytes) -> None:
    with contextlib.suppress(MessageError):
        parse_command(data)
