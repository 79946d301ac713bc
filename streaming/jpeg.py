"""Frames as JPEG for the frames topic, under Kafka's default message size."""

from __future__ import annotations

import cv2

from streaming.errors import StreamingError

#: Kafka's default message.max.bytes is about 1 MB; larger frames are re-encoded at lower quality.
MAX_FRAME_BYTES = 1_000_000


class FrameTooLargeError(StreamingError, ValueError):
    pass


def encode_jpeg(image: cv2.typing.MatLike, quality: int = 90) -> bytes:
    """JPEG bytes under MAX_FRAME_BYTES, lowering the quality as needed."""
    for attempt in (quality, 75, 60, 40):
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, attempt])
        if ok and len(data) <= MAX_FRAME_BYTES:
            return bytes(data)
    raise FrameTooLargeError(f"frame of {image.shape[1]}x{image.shape[0]} stays over {MAX_FRAME_BYTES} bytes as JPEG")
