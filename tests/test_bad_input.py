"""Every kind of bad input ends in a reason and a count, never in a crash of the run."""

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from streaming.decode import DecodeFailure, ImageDecodeError, decode_image
from streaming.sources import BadInput, Frame, FrameSource, SourceError, _classify
from tests.images import jpeg_bytes, png_header


def _encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", DecodeFailure.EMPTY),
        (b"hello, this is not a picture", DecodeFailure.NOT_IMAGE),
        (b'{"frame": 1}', DecodeFailure.NOT_IMAGE),
        (png_header(30000, 30000), DecodeFailure.TOO_LARGE),
        (jpeg_bytes()[:300], DecodeFailure.CORRUPT),
        (jpeg_bytes()[:2] + b"\x00" * 500, DecodeFailure.NOT_IMAGE),
    ],
    ids=["zero-bytes", "text", "json", "30000x30000-header", "truncated-jpeg", "jpeg-magic-then-garbage"],
)
def test_bad_bytes_raise_a_reason(data: bytes, reason: DecodeFailure) -> None:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data)
    assert caught.value.reason is reason
    assert str(caught.value).startswith(reason.value)


def test_the_pixel_limit_is_configurable() -> None:
    with pytest.raises(ImageDecodeError, match="over the limit of 1000 pixels"):
        decode_image(jpeg_bytes(64, 48), max_pixels=1000)


def test_grey_image_becomes_three_channels() -> None:
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (10, 1))
    image = decode_image(_encode(grey))
    assert image.shape == (10, 64, 3)
    assert image.dtype == np.uint8
    assert image[0, 10].tolist() == [40, 40, 40]


def test_sixteen_bit_image_is_scaled_not_clipped() -> None:
    wide = np.full((8, 8), 32768, np.uint16)
    ok, png = cv2.imencode(".png", wide)
    assert ok
    image = decode_image(bytes(png))
    assert image.dtype == np.uint8
    assert image[0, 0].tolist() == [128, 128, 128]


def test_four_channel_image_drops_alpha_and_keeps_colour_order_bgr() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[..., 3] = 10  # nearly transparent
    image = decode_image(_encode(rgba))
    assert image.shape == (4, 4, 3)
    assert image[0, 0].tolist() == [0, 0, 255]


def test_folder_source_reports_bad_files_and_goes_on(tmp_path: Path) -> None:
    (tmp_path / "a_good.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "b_empty.jpg").write_bytes(b"")
    (tmp_path / "c_text.png").write_bytes(b"not an image")
    (tmp_path / "d_bomb.png").write_bytes(png_header(30000, 30000))
    (tmp_path / "e_good.png").write_bytes(_encode(np.zeros((5, 5, 3), np.uint8)))
    (tmp_path / "notes.txt").write_text("ignored: not an image file name")
    items = list(FrameSource(str(tmp_path)))
    assert [type(i) for i in items] == [Frame, BadInput, BadInput, BadInput, Frame]
    reasons = [i.reason for i in items if isinstance(i, BadInput)]
    assert reasons == [DecodeFailure.EMPTY, DecodeFailure.NOT_IMAGE, DecodeFailure.TOO_LARGE]


@pytest.mark.parametrize(
    "content", [b"", b"\x00\x00\x00\x18ftypmp42 then nothing useful" * 3], ids=["empty", "garbage"]
)
def test_an_unreadable_video_is_a_source_error(tmp_path: Path, content: bytes) -> None:
    video = tmp_path / "broken.mp4"
    video.write_bytes(content)
    with pytest.raises(SourceError, match=r"broken\.mp4"):
        list(FrameSource(str(video)))


def test_a_missing_source_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="not a folder, a file"):
        FrameSource("/nonexistent/video.mp4")


def test_stream_urls_do_not_leak_credentials_into_the_camera_id() -> None:
    kind, camera = _classify("rtsp://admin:secret@10.0.0.7:554/stream1", None)
    assert kind == "stream"
    assert "secret" not in camera
    assert camera == "10.0.0.7_554_stream1"
