"""The measures the plan reads from a frame's grey copy: its size, cuts, and how much of it moved."""

from __future__ import annotations

import numpy as np

from models.motion import changed_pixels, cut_thumb, reduced_grey, reduced_size, smallest_face_pixels


def test_the_grey_copy_is_an_eighth_rounded_up_as_a_jpeg_decoder_gives_it() -> None:
    assert reduced_size(360, 640) == (45, 80)
    assert reduced_size(270, 480) == (34, 60)
    image = np.full((270, 480, 3), 200, np.uint8)
    assert reduced_grey(image).shape == (34, 60)


def test_a_small_grey_copy_is_not_enlarged_for_the_cut_measure() -> None:
    assert cut_thumb(np.zeros((34, 60), np.uint8)).shape == (34, 60)
    assert cut_thumb(np.zeros((135, 240), np.uint8)).shape == (36, 64)


def test_motion_is_the_area_that_changed_beyond_the_noise() -> None:
    rng = np.random.default_rng(1)
    room = rng.integers(80, 120, (34, 60), dtype=np.uint8)
    noisy = np.clip(room.astype(np.int16) + rng.integers(-3, 4, room.shape), 0, 255).astype(np.uint8)
    assert changed_pixels(noisy, room, 20.0) == 0
    walked_in = noisy.copy()
    walked_in[10:14, 20:23] = 250  # a 4x3 patch: a person's head at 1/8
    assert changed_pixels(walked_in, room, 20.0) == 12
    assert changed_pixels(walked_in, room, 20.0) >= smallest_face_pixels(20.0)
    assert changed_pixels(np.zeros((40, 60), np.uint8), room, 20.0) == 40 * 60  # another size: all changed
