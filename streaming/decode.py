"""Bytes to pixels, safely: every way an image can be bad ends in an ImageDecodeError with a reason."""

from __future__ import annotations

import io
import warnings
from enum import StrEnum

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from streaming.errors import StreamingError

#: Largest image decoded by default: 8K UHD is 33 MP; anything far beyond is a decompression bomb.
DEFAULT_MAX_PIXELS = 50_000_000


class DecodeFailure(StrEnum):
    EMPTY = "empty"
    NOT_IMAGE = "not_image"
    TOO_LARGE = "too_large"
    CORRUPT = "corrupt"


class ImageDecodeError(StreamingError, ValueError):
    def __init__(self, reason: DecodeFailure, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """An (h, w, 3) BGR uint8 image from encoded bytes (JPEG, PNG, WebP, TIFF, BMP, ...).

    Grey, 16-bit, palette, CMYK and alpha images are converted; EXIF orientation is applied. The size is
    checked from the header before any pixel is decoded.
    """
    image, _ = _opened(data, max_pixels, reduction=1)
    return _to_bgr8(image)


#: The first bytes of every JPEG (what Pillow identifies one by).
_JPEG_MAGIC = b"\xff\xd8\xff"


def decode_grey_preview(
    data: bytes, reduction: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[NDArray[np.uint8], tuple[int, int]] | None:
    """A JPEG's grey copy at about 1/``reduction`` of its size (2, 4 or 8), decoded at that scale (its DCT
    scaling, the luma only: a few times faster than decoding it whole), and the (height, width) of the whole
    image, both after EXIF orientation; the same checks and errors as ``decode_image``. None for any other
    format, which has no such scaling: decode it whole."""
    if not data.startswith(_JPEG_MAGIC):
        return None
    image, (height, width) = _opened(data, max_pixels, reduction)
    if image.mode != "L":  # a CMYK JPEG has no luma to decode alone
        image = image.convert("L")
    return np.array(image, dtype=np.uint8), (height, width)


#: EXIF orientations that turn the picture a quarter: its width and height swap.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def _opened(data: bytes, max_pixels: int, reduction: int) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded, upright image (at 1/``reduction`` where its format allows) and its whole (height, width)."""
    if not data:
        raise ImageDecodeError(DecodeFailure.EMPTY, "zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    DecodeFailure.TOO_LARGE, f"{width}x{height} is over the limit of {max_pixels} pixels"
                )
            if reduction > 1:
                image.draft("L", (max(1, width // reduction), max(1, height // reduction)))
            image.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(DecodeFailure.TOO_LARGE, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            DecodeFailure.NOT_IMAGE, f"not an image format Pillow knows ({len(data)} bytes)"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow reports truncated and malformed data so
        raise ImageDecodeError(DecodeFailure.CORRUPT, str(exc) or type(exc).__name__) from exc
    if width == 0 or height == 0:
        raise ImageDecodeError(DecodeFailure.CORRUPT, f"{width}x{height} image has no pixels")
    if image.getexif().get(ExifTags.Base.Orientation) in _QUARTER_TURNS:
        width, height = height, width
    ImageOps.exif_transpose(image, in_place=True)  # in place: a copy would double the peak of a large image
    return image, (height, width)


def _to_bgr8(image: Image.Image) -> NDArray[np.uint8]:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _wide_grey_to_bgr8(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    bgr = np.array(image, dtype=np.uint8)  # a writable copy; Pillow's buffer is released with the image
    cv2.cvtColor(bgr, cv2.COLOR_RGB2BGR, dst=bgr)  # in place: no temporary the size of the image
    return bgr


#: Rows scaled at a time from a wide grey image: the float32 temporary stays a few megabytes at any size.
_GREY_ROWS = 256


def _wide_grey_to_bgr8(image: Image.Image) -> NDArray[np.uint8]:
    """Scales 16-bit, 32-bit and float grey to the 8-bit range (rather than clipping everything above 255 to
    white), a block of rows at a time: never a float64 copy of the whole image."""
    wide = np.asarray(image)
    top = 65535.0 if image.mode.startswith("I;16") or float(wide.max()) > 255 else 255.0
    bgr = np.empty((*wide.shape[:2], 3), dtype=np.uint8)
    for start in range(0, wide.shape[0], _GREY_ROWS):
        block = wide[start : start + _GREY_ROWS].astype(np.float32)
        grey = np.clip(block * np.float32(255.0 / top) + np.float32(0.5), 0, 255).astype(np.uint8)
        bgr[start : start + _GREY_ROWS] = grey[..., None]
    return bgr
