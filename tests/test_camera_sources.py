"""Camera ids, camera lists and what the edge does to a frame: pure functions a site's operator relies on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streaming.camera_list import CameraListError, read_camera_list
from streaming.read_policy import backoff_s
from streaming.readers import scaled
from streaming.sources import FrameSource, public_url


@pytest.mark.parametrize(
    ("url", "camera"),
    [
        ("rtsp://admin:pw@10.0.0.5:554/Streaming/Channels/101?token=abc#x", "10.0.0.5_554_Streaming_Channels_101"),
        ("http://127.0.0.1:8080/video.mjpg?auth=zz&user=me", "127.0.0.1_8080_video.mjpg"),
        ("rtsp://cam-7.local/", "cam-7.local"),
        ("https://viewer@cam.example/live?pwd=x", "cam.example_live"),
    ],
)
def test_a_camera_id_from_a_url_keeps_host_port_and_path_only(url: str, camera: str) -> None:
    assert FrameSource(url).camera == camera
    assert "pw" not in public_url(url).split("//")[1].split("/")[0]
    assert "?" not in public_url(url)
    assert "#" not in public_url(url)


def test_a_camera_list_gives_ids_urls_and_per_camera_limits(tmp_path: Path) -> None:
    path = tmp_path / "cameras.toml"
    path.write_text(
        '[[camera]]\nid = "door"\nurl = "rtsp://u:p@10.0.0.5/1"\nspace = "hq"\nmax_fps = 5\ntransport = "udp"\n\n'
        '[[camera]]\nid = "yard"\nurl = "http://10.0.0.6/video.mjpg"\nmax_size = 0\n'
    )
    door, yard = read_camera_list(path)
    assert (door.id, door.space, door.max_fps, door.transport) == ("door", "hq", 5, "udp")
    assert (yard.space, yard.max_size) == (None, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[camera]]\nid = "a"\nurl = "rtsp://x/1"\n[[camera]]\nid = "a"\nurl = "rtsp://x/2"\n', "more than once"),
        ('[[camera]]\nid = "a b"\nurl = "rtsp://x/1"\n', "camera.0.id"),
        ('[[camera]]\nid = "a"\nurl = "rtsp://u:SECRET@x/1"\nmax_fps = -1\n', "camera.0.max_fps"),
        ('[[camera]]\nid = "a"\nurl = "rtsp://x/1"\nfps = 3\n', "camera.0.fps"),
        ("[[camera]\n", "not valid TOML"),
        ('camera = "rtsp://x/1"\n', "camera: Input should be a valid list"),
    ],
)
def test_a_bad_camera_list_says_what_is_wrong_and_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cameras.toml"
    path.write_text(text)
    with pytest.raises(CameraListError, match=message) as caught:
        read_camera_list(path)
    assert "SECRET" not in str(caught.value)


def test_a_camera_list_with_every_camera_commented_out_names_none(tmp_path: Path) -> None:
    path = tmp_path / "cameras.toml"
    path.write_text('# [[camera]]\n# id = "door"\n')
    assert read_camera_list(path) == []


def test_reconnection_waits_double_up_to_their_cap() -> None:
    assert [backoff_s(n, 0.5, 4.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_frames_are_scaled_down_to_their_long_side_and_never_up() -> None:
    wide = np.zeros((1080, 1920, 3), np.uint8)
    assert scaled(wide, 640).shape == (360, 640, 3)
    tall = np.zeros((1920, 1080, 3), np.uint8)
    assert scaled(tall, 640).shape == (640, 360, 3)
    small = np.zeros((270, 480, 3), np.uint8)
    assert scaled(small, 640) is small
    assert scaled(wide, None) is wide
