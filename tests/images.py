"""Small images and image headers, made in memory, for the bad-input tests."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one tiny compressed row: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def jpeg_bytes(width: int = 64, height: int = 48) -> bytes:
    ok, data = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))
    assert ok
    return bytes(data)
