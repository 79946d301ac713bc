"""Detector-independent pieces: the result type, letterboxing, NMS and the detector base."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from models.base import OnnxModel
from models.errors import ModelError
from models.heads import DetectionHead, FloatArray, Image, select_head
from models.session import InferenceSession, SessionFactory
from models.settings import DetectorSettings


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, in that image's pixel coordinates, highest score first."""

    boxes: FloatArray  # (n, 4): x1, y1, x2, y2
    scores: FloatArray  # (n,)
    landmarks: FloatArray  # (n, 5, 2): left eye, right eye, nose, left mouth corner, right mouth corner

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass(frozen=True)
class Letterbox:
    """An image scaled to fit the network input, padded at the right and bottom."""

    canvas: Image
    scale: float


#: The coarsest stride of RetinaFace and SCRFD graphs: a dynamic input's sides must be multiples of it.
INPUT_STRIDE = 32


def fit_scale(image_hw: tuple[int, int], width: int, height: int, max_upscale: float = 1.0) -> float:
    return min(width / image_hw[1], height / image_hw[0], max_upscale)


def aspect_input_hw(image_hw: tuple[int, int], width: int, height: int, max_upscale: float = 1.0) -> tuple[int, int]:
    """The smallest input of stride-multiple sides that holds the image scaled into ``width`` x ``height``.

    A 640x360 frame needs 640x384, not 640x640: 40% fewer pixels through the detector for the same faces.
    """
    scale = fit_scale(image_hw, width, height, max_upscale)
    scaled_h, scaled_w = max(1, round(image_hw[0] * scale)), max(1, round(image_hw[1] * scale))
    return (-(-scaled_h // INPUT_STRIDE) * INPUT_STRIDE, -(-scaled_w // INPUT_STRIDE) * INPUT_STRIDE)


def letterbox(image: Image, width: int, height: int, max_upscale: float = 1.0) -> Letterbox:
    scale = fit_scale((image.shape[0], image.shape[1]), width, height, max_upscale)
    new_w = max(1, round(image.shape[1] * scale))
    new_h = max(1, round(image.shape[0] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:new_h, :new_w] = resized
    return Letterbox(canvas, scale)


def nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float) -> NDArray[np.intp]:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        x1 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


class FaceDetector(OnnxModel):
    """Letterboxes a batch of frames, runs the graph once, decodes each frame's faces.

    The graph's outputs choose the decoding (see ``models.heads``), so any RetinaFace or SCRFD export in
    either the insightface layout or the prior-box layout works without configuration.
    """

    def __init__(self, path: Path, session_factory: SessionFactory, settings: DetectorSettings) -> None:
        super().__init__(path, session_factory)
        self.settings = settings
        self._head: DetectionHead | None = None

    def _check_graph(self, session: InferenceSession) -> None:
        super()._check_graph(session)
        self._head = select_head(self.path.name, session.get_outputs())

    @property
    def head(self) -> DetectionHead:
        _ = self.session  # creating the session checks the graph and picks the head
        if self._head is None:
            raise ModelError(f"{self.path.name}: no detection head was chosen for its outputs")
        return self._head

    def input_hw(self, images: Sequence[Image] = ()) -> tuple[int, int]:
        """The graph's input for a batch: fixed by the graph, or the batch's own aspect where it is dynamic."""
        fixed = self.fixed_input_hw()
        if fixed is not None:
            return fixed
        width, height = self.settings.input_size
        if not self.settings.fit_aspect or not images:
            return height, width
        sizes = [
            aspect_input_hw((image.shape[0], image.shape[1]), width, height, self.settings.max_upscale)
            for image in images
        ]
        return max(h for h, _ in sizes), max(w for _, w in sizes)

    def detect(self, images: Sequence[Image]) -> list[Detections]:
        """Faces in each BGR image; a batch of any size runs as one inference."""
        if not images:
            return []
        height, width = self.input_hw(images)
        boxes = [letterbox(image, width, height, self.settings.max_upscale) for image in images]
        head = self.head
        blob = head.blob(np.stack([b.canvas for b in boxes]))
        outputs = self.session.run(None, {self.input.name: blob})
        decoded = head.decode([np.asarray(o, dtype=np.float32) for o in outputs], height, width)
        return [
            self._finish(det_boxes, det_scores, det_landmarks, box.scale, image.shape)
            for (det_boxes, det_scores, det_landmarks), box, image in zip(decoded, boxes, images, strict=True)
        ]

    def _finish(
        self,
        boxes: FloatArray,
        scores: FloatArray,
        landmarks: FloatArray,
        scale: float,
        shape: tuple[int, ...],
    ) -> Detections:
        confident = scores >= self.settings.score_threshold
        boxes, scores, landmarks = boxes[confident], scores[confident], landmarks[confident]
        keep = nms(boxes, scores, self.settings.nms_threshold)[: self.settings.max_faces]
        boxes, scores, landmarks = boxes[keep] / scale, scores[keep], landmarks[keep] / scale
        limit = np.array([shape[1], shape[0], shape[1], shape[0]], np.float32)
        boxes = np.clip(boxes, 0, limit)
        return Detections(
            boxes.astype(np.float32),
            scores.astype(np.float32),
            landmarks.reshape(-1, 5, 2).astype(np.float32),
        )
