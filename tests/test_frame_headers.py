"""The frames topic's headers: versions, sessions, and the reason each bad header is refused with."""

import pytest

from streaming.frame_headers import FrameHeaders, new_session
from streaming.messages import MessageError
from tests.message_examples import EXAMPLES


def test_frame_headers_round_trip_through_kafka_headers() -> None:
    headers = EXAMPLES["frame-headers.v2"]
    assert isinstance(headers, FrameHeaders)
    kafka = headers.to_kafka()
    assert ("camera", b"lobby") in kafka
    assert FrameHeaders.from_kafka(kafka) == headers


def test_a_version_1_frame_without_session_is_still_read() -> None:
    headers = FrameHeaders.from_kafka(
        [("version", b"1"), ("camera", b"door"), ("frame", b"7"), ("timestamp", b"1.5"), ("space", b"hq")]
    )
    assert (headers.version, headers.session, headers.frame) == (1, None, 7)


def test_sessions_are_distinct_even_in_one_millisecond_and_sort_by_start() -> None:
    same_moment = {new_session(1_700_000_000.0) for _ in range(200)}
    assert len(same_moment) == 200
    assert new_session(1_700_000_000.0) < new_session(1_800_000_000.0)
    assert all(FrameHeaders(camera="c", session=s, frame=0, timestamp=0.0) for s in same_moment)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([], "missing_header"),
        ([("version", b"1"), ("camera", b"lobby"), ("frame", b"3")], "missing_header"),
        ([("version", b"1"), ("camera", b"lobby"), ("frame", b"three"), ("timestamp", b"1.0")], "malformed_header"),
        ([("version", b"1"), ("camera", b"lobby"), ("frame", b"-1"), ("timestamp", b"1.0")], "malformed_header"),
        ([("version", b"1"), ("camera", b"\xff\xfe"), ("frame", b"1"), ("timestamp", b"1.0")], "malformed_header"),
        ([("version", b"3"), ("camera", b"lobby"), ("frame", b"1"), ("timestamp", b"1.0")], "unknown_version"),
        ([("version", b"2"), ("camera", b"lobby"), ("frame", b"1"), ("timestamp", b"1.0")], "malformed_header"),
        (
            [("version", b"2"), ("camera", b"x"), ("session", b"a:b"), ("frame", b"1"), ("timestamp", b"1.0")],
            "malformed_header",
        ),
        (
            [("version", b"1"), ("camera", b"x"), ("session", b"ab"), ("frame", b"1"), ("timestamp", b"1.0")],
            "malformed_header",
        ),
        (
            [("version", b"1"), ("camera", b"x"), ("frame", b"1"), ("timestamp", b"1.0"), ("space", b"a b")],
            "malformed_header",
        ),
        (
            [("version", b"1"), ("camera", b"x"), ("frame", b"1"), ("timestamp", b"1.0"), ("space", b"hq:east")],
            "malformed_header",
        ),
        (
            [("version", b"1"), ("camera", b"lobby"), ("frame", b"1"), ("frame", b"2"), ("timestamp", b"1.0")],
            "malformed_header",
        ),
    ],
    ids=[
        "none",
        "no-timestamp",
        "frame-not-a-number",
        "negative-frame",
        "not-utf8",
        "version-3",
        "v2-without-session",
        "session-with-colon",
        "v1-with-session",
        "space-with-a-space",
        "space-with-a-colon",
        "frame-twice",
    ],
)
def test_bad_frame_headers_name_their_reason(headers: list[tuple[str, bytes]], reason: str) -> None:
    with pytest.raises(MessageError) as caught:
        FrameHeaders.from_kafka(headers)
    assert caught.value.reason == reason
