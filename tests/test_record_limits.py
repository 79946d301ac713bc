"""The record policy's pure parts: dead letters and events fit their limit whatever they carry, a batch holds no
more decoded pixels than its budget, one failing frame does not fail its batch, and commands cannot ask for
unbounded work."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator

import numpy as np
import pytest
from confluent_kafka import Message

from models.frames import CameraFrame, FrameResult
from streaming.commands import ForgottenEvent, SplitEvent, SplitPart, parse_command
from streaming.dead_letters import KEPT_FIELD_BYTES, RECORD_OVERHEAD, dead_letter
from streaming.event_pieces import fitted_events
from streaming.frame_headers import FrameHeaders
from streaming.messages import MessageError
from workers.embed.frame_batches import DecodedFrame, run_isolated, within_budget


@pytest.mark.parametrize("size", [0, 10, 5_000, 200_000, 2_000_000])
def test_a_dead_letter_fits_its_limit_and_keeps_what_fits(size: int) -> None:
    value = np.random.default_rng(size).bytes(size)
    message = Message(
        topic="frames", partition=3, offset=7, key=b"k" * 5000, value=value, headers=[("camera", b"c" * 5000)] * 50
    )
    letter = dead_letter(message, "embed", "not_image", ValueError("x" * 10_000), max_bytes=100_000)
    assert len(letter.to_json()) <= 100_000 - RECORD_OVERHEAD
    kept = base64.b64decode(letter.value or "")
    assert value.startswith(kept)
    assert letter.value_truncated == (len(kept) < size)
    assert letter.value_truncated == (size > 50_000)
    assert (letter.value_bytes, letter.value_sha256) == (size, hashlib.sha256(value).hexdigest())
    assert len(base64.b64decode(letter.key or "")) == KEPT_FIELD_BYTES
    assert len(letter.headers) == 32


def _split(faces: int) -> SplitEvent:
    parts = [SplitPart(cluster=c, faces=[f"camera-{c}:{i}:0" for i in range(faces // 3)]) for c in (4, 9, 12)]
    return SplitEvent(space="s", command_id="c", cluster=4, parts=parts)


def test_a_split_that_fits_is_one_event_and_one_that_does_not_is_pieces_with_every_face() -> None:
    assert fitted_events(_split(30), 10_000) == [_split(30)]
    pieces = fitted_events(_split(45_000), 100_000)
    assert all(len(piece.to_json()) <= 100_000 for piece in pieces)
    assert [(p.piece, p.pieces) for p in pieces if isinstance(p, SplitEvent)] == [
        (n, len(pieces)) for n in range(1, len(pieces) + 1)
    ]
    whole = {(part.cluster, face) for part in _split(45_000).parts for face in part.faces}
    cut = {(part.cluster, face) for p in pieces if isinstance(p, SplitEvent) for part in p.parts for face in part.faces}
    assert cut == whole


def test_an_erasure_in_pieces_keeps_its_faces_parts_and_removed_clusters() -> None:
    event = ForgottenEvent(
        space="s",
        command_id="f",
        faces=[f"door:{i}:0" for i in range(20_000)],
        parts=[SplitPart(cluster=5, faces=[f"hall:{i}:0" for i in range(20_000)])],
        removed=list(range(1000)),
    )
    pieces = [p for p in fitted_events(event, 60_000) if isinstance(p, ForgottenEvent)]
    assert len(pieces) > 1
    assert all(len(piece.to_json()) <= 60_000 for piece in pieces)
    assert [face for p in pieces for face in p.faces] == event.faces
    assert [face for p in pieces for part in p.parts for face in part.faces] == event.parts[0].faces
    assert [cluster for p in pieces for cluster in p.removed] == event.removed


def _decoded(number: int, side: int) -> DecodedFrame:
    image = np.zeros((side, side, 3), np.uint8)
    headers = FrameHeaders(camera="c", frame=number, timestamp=float(number))
    return DecodedFrame(Message(offset=number), headers, CameraFrame.decoded("c", number, float(number), image))


def test_a_batch_is_cut_into_parts_within_its_pixel_budget_decoding_lazily() -> None:
    decoded: list[int] = []

    def frames() -> Iterator[DecodedFrame]:
        for n, side in enumerate([100, 100, 100, 300, 50]):
            decoded.append(n)
            yield _decoded(n, side)

    parts = within_budget(frames(), max_pixels=25_000)
    first = next(parts)
    assert [d.frame.number for d in first] == [0, 1]
    assert decoded == [0, 1, 2]  # the next part's first frame, no further
    assert [[d.frame.number for d in part] for part in parts] == [[2], [3], [4]]


def test_a_frame_that_fails_the_pipeline_is_set_apart_and_its_batch_is_served() -> None:
    def process(frames: list[CameraFrame]) -> list[FrameResult]:
        if any(frame.number == 2 for frame in frames):
            raise FloatingPointError("a model blew up on frame 2")
        return [FrameResult(frame.camera, frame.number, frame.timestamp, [], []) for frame in frames]

    processed, failed = run_isolated(process, [_decoded(n, 8) for n in range(4)])
    assert [item.frame.number for item, _ in processed] == [0, 1, 3]
    assert [(item.frame.number, type(error)) for item, error in failed] == [(2, FloatingPointError)]


@pytest.mark.parametrize("cut_off", ["before", "stored_before"])
def test_a_forget_with_a_cut_off_in_the_future_or_infinite_is_refused(cut_off: str) -> None:
    for value in (1e12, time.time() + 3600, "Infinity"):
        body = f'{{"type": "forget", "command_id": "f", "space": "s", "{cut_off}": {value}}}'
        with pytest.raises(MessageError):
            parse_command(body)
    parse_command(f'{{"type": "forget", "command_id": "f", "space": "s", "{cut_off}": {time.time() - 60}}}')
