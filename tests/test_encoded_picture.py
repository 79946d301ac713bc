"""A frame off the frames topic is decoded whole only where the detector looks at it: its grey copy is what a
whole decode would give, its size is known without decoding it, and a bad frame fails before any pipeline."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from models.frames import DecodedPicture
from streaming.decode import DecodeFailure, ImageDecodeError
from tests.images import jpeg_bytes
from workers.plumbing.encoded_picture import EncodedPicture


def _photo(width: int = 640, height: int = 360) -> np.ndarray:
    rng = np.random.default_rng(7)
    coarse = rng.integers(0, 255, (9, 16, 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.asarray(smooth, dtype=np.uint8)


def _encoded(image: np.ndarray, ext: str = ".jpg") -> bytes:
    return cv2.imencode(ext, image)[1].tobytes()


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_the_grey_copy_is_the_one_a_whole_decode_gives(ext: str) -> None:
    data = _encoded(_photo(), ext)
    picture = EncodedPicture(data)
    assert picture.shape == (360, 640, 3)
    whole = DecodedPicture(picture.pixels())
    assert picture.grey().shape == whole.grey().shape == (45, 80)
    assert float(np.abs(picture.grey().astype(np.float32) - whole.grey()).mean()) < 1.0


def test_a_jpeg_is_not_decoded_whole_until_asked() -> None:
    picture = EncodedPicture(_encoded(_photo(1920, 1080)))
    assert picture.grey().shape == (135, 240)
    assert picture._image is None
    assert picture.pixels().shape == (1080, 1920, 3)
    assert picture.pixels() is picture.pixels()  # decoded once


def test_an_upright_turned_jpeg_has_its_turned_size() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to show
    Image.fromarray(_photo(64, 48)[..., ::-1]).save(buffer, "JPEG", exif=exif)
    picture = EncodedPicture(buffer.getvalue())
    assert picture.shape == (64, 48, 3)
    assert picture.grey().shape == (8, 6)
    assert picture.pixels().shape == (64, 48, 3)


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", DecodeFailure.EMPTY), (jpeg_bytes()[:300], DecodeFailure.CORRUPT), (b"{}", DecodeFailure.NOT_IMAGE)],
)
def test_a_bad_frame_fails_when_it_is_read_with_its_reason(data: bytes, reason: DecodeFailure) -> None:
    with pytest.raises(ImageDecodeError) as failure:
        EncodedPicture(data)
    assert failure.value.reason is reason
