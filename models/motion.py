"""What the pipeline sees of a frame the detector may skip: a grey copy at an eighth of its size, the scale a
JPEG decoder gives almost for free (its DCT scaling), and from it the measures that decide detections.

Pure functions: the same picture gives the same answer whichever way its grey copy was made (a full frame
scaled down, or a JPEG decoded at an eighth).
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

#: The grey copy is the frame at 1/REDUCTION of its width and height (each pixel the mean of an 8x8 block).
REDUCTION = 8
#: A smaller grey copy still, to see cuts: the mean change over it does not depend on the frame's size.
CUT_THUMB_SIZE = (64, 36)

GreyImage = NDArray[np.uint8]


def reduced_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of a frame's grey copy: what a JPEG decoder's 1/8 scaling gives (rounded up)."""
    return -(-height // REDUCTION), -(-width // REDUCTION)


def reduced_grey(image: NDArray[np.uint8]) -> GreyImage:
    """A BGR frame's grey copy at 1/8 of its size, for a frame that was decoded whole."""
    height, width = reduced_size(image.shape[0], image.shape[1])
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return np.asarray(cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def cut_thumb(grey: GreyImage) -> NDArray[np.float32]:
    """The grey copy at 64x36, as floats: the picture whose mean change marks cuts and jumps. A grey copy no
    larger than that (a frame of 512x288 or less) is taken as it is: enlarging it would only interpolate, and
    interpolation averages neighbours, which lowers the change measured."""
    if grey.shape[1] <= CUT_THUMB_SIZE[0] or grey.shape[0] <= CUT_THUMB_SIZE[1]:
        return grey.astype(np.float32)
    return cv2.resize(grey, CUT_THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)


def mean_change(thumb: NDArray[np.float32], before: NDArray[np.float32]) -> float:
    """Mean absolute change between two cut thumbs (0-255)."""
    return float(np.abs(thumb - before).mean())


def changed_pixels(grey: GreyImage, reference: GreyImage, pixel_change: float) -> int:
    """Pixels of the grey copy that changed by more than ``pixel_change`` since ``reference`` (a motion mask's
    area); a reference of another size (the frame changed size) counts every pixel as changed."""
    if grey.shape != reference.shape:
        return int(grey.size)
    difference = cv2.absdiff(grey, reference)
    return int(np.count_nonzero(difference > pixel_change))


def smallest_face_pixels(min_face_size: float) -> int:
    """Pixels of the grey copy a face covers at the smallest size the quality gate embeds: the least change that
    can be a face entering or moving (at least one pixel)."""
    side = min_face_size / REDUCTION
    return max(1, int(side * side))
