"""A frame as the frames topic carries it (encoded bytes), decoded only as far as the pipeline looks at it: the
grey copy at 1/8 that every frame needs is decoded at once (a JPEG at that scale, a few times faster than
whole), the whole picture only for the frames the detector runs on. The one place where streaming's decoder
meets models' ``Picture``."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from models.motion import REDUCTION, GreyImage, reduced_grey, reduced_size
from streaming.decode import DEFAULT_MAX_PIXELS, decode_grey_preview, decode_image


class EncodedPicture:
    """Satisfies ``models.frames.Picture``. Built from bytes that decode: a frame that does not raises the
    decoder's ``ImageDecodeError`` here, with its reason, before any pipeline sees it. A frame in a format
    other than JPEG has no reduced decode and is decoded whole here, once."""

    def __init__(self, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._data = data
        self._max_pixels = max_pixels
        self._image: NDArray[np.uint8] | None = None
        preview = decode_grey_preview(data, REDUCTION, max_pixels)
        if preview is None:
            self._image = decode_image(data, max_pixels)
            self._grey: GreyImage = reduced_grey(self._image)
            self._shape = (int(self._image.shape[0]), int(self._image.shape[1]), 3)
            return
        grey, (height, width) = preview
        reduced = reduced_size(height, width)
        if grey.shape != reduced:  # a JPEG too small to scale by 8
            grey = np.asarray(cv2.resize(grey, reduced[::-1], interpolation=cv2.INTER_AREA), dtype=np.uint8)
        self._grey = grey
        self._shape = (height, width, 3)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._shape

    def grey(self) -> GreyImage:
        return self._grey

    def pixels(self) -> NDArray[np.uint8]:
        if self._image is None:
            self._image = decode_image(self._data, self._max_pixels)
        return self._image
