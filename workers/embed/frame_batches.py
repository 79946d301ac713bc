"""The embed stage's batch, bounded and isolated: frames are decoded only as the pipeline can take them (a batch
never holds more decoded pixels than its budget), and a frame that makes the pipeline fail is set apart (to be
dead-lettered) instead of failing its whole batch on every retry."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import Message

from models.frames import CameraFrame, FrameResult
from streaming.frame_headers import FrameHeaders

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodedFrame:
    message: Message
    headers: FrameHeaders
    frame: CameraFrame

    @property
    def pixels(self) -> int:
        height, width, _ = self.frame.picture.shape
        return height * width


def within_budget(frames: Iterable[DecodedFrame], max_pixels: int) -> Iterator[list[DecodedFrame]]:
    """Consecutive parts of ``frames`` of at most ``max_pixels`` decoded pixels each (a larger frame alone).

    ``frames`` is consumed lazily, so only one part (and the next frame) is decoded at a time."""
    part: list[DecodedFrame] = []
    pixels = 0
    for frame in frames:
        if part and pixels + frame.pixels > max_pixels:
            yield part
            part, pixels = [], 0
        part.append(frame)
        pixels += frame.pixels
    if part:
        yield part


Processed = list[tuple[DecodedFrame, FrameResult]]
Failed = list[tuple[DecodedFrame, Exception]]


def run_isolated(
    process: Callable[[list[CameraFrame]], list[FrameResult]], part: list[DecodedFrame]
) -> tuple[Processed, Failed]:
    """Runs ``part`` through ``process``; when it raises, runs each frame alone to find the ones that fail.

    A frame's failure is deterministic (its pixels, its headers) far more often than not; a part that failed
    and whose frames all succeed alone was a transient failure and is not lost either."""
    try:
        return list(zip(part, process([item.frame for item in part]), strict=True)), []
    except MemoryError:
        raise
    except Exception as exc:
        if len(part) == 1:
            return [], [(part[0], exc)]
        log.warning("a batch of %d frames failed (%r); its frames are run one at a time", len(part), exc)
    processed: Processed = []
    failed: Failed = []
    for item in part:
        done, failures = run_isolated(process, [item])
        processed += done
        failed += failures
    return processed, failed
