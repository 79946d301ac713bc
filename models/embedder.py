"""ArcFace-style embedders: aligned crops in, L2-normalised vectors out, in batches."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from models.base import OnnxModel
from models.errors import ModelError
from models.heads import nchw_blob
from models.session import InferenceSession, SessionFactory
from models.settings import EmbedderSettings


class FaceEmbedder(OnnxModel):
    def __init__(self, path: Path, session_factory: SessionFactory, settings: EmbedderSettings) -> None:
        super().__init__(path, session_factory)
        self.settings = settings

    def _check_graph(self, session: InferenceSession) -> None:
        super()._check_graph(session)
        outputs = session.get_outputs()
        if len(outputs) != 1 or not isinstance(outputs[0].shape[-1], int):
            raise ModelError(f"{self.path.name}: an embedder has one output of fixed width; got {outputs}")

    @property
    def dimension(self) -> int:
        width = self.session.get_outputs()[0].shape[-1]
        if not isinstance(width, int):  # _check_graph refused it when the session was made
            raise ModelError(f"{self.path.name}: an embedder's output has a fixed width; got {width!r}")
        return width

    @property
    def crop_size(self) -> tuple[int, int]:
        """Height and width of the crops the graph takes (112x112 for ArcFace)."""
        fixed = self.fixed_input_hw()
        if fixed is None:
            raise ModelError(f"{self.path.name}: embedder input size must be fixed in the graph")
        return fixed

    def embed(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """(n, dim) unit vectors for (n, h, w, 3) BGR crops, run in batches of the configured size."""
        if len(crops) == 0:
            return np.zeros((0, self.dimension), np.float32)
        height, width = self.crop_size
        if crops.shape[1:3] != (height, width):
            crops = np.stack([cv2.resize(c, (width, height)) for c in crops])
        if self.settings.flip:
            # A face and its mirror are one identity: the sum of their raw outputs, normalised once.
            both = self._raw(np.concatenate([crops, crops[:, :, ::-1]]))
            return l2_normalise(both[: len(crops)] + both[len(crops) :])
        return l2_normalise(self._raw(crops))

    def _raw(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        session, name, step = self.session, self.input.name, self.settings.batch_size
        vectors = [
            np.asarray(session.run(None, {name: self._blob(crops[i : i + step])})[0], np.float32)
            for i in range(0, len(crops), step)
        ]
        return np.concatenate(vectors)

    def _blob(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        mean = (self.settings.input_mean,) * 3
        return nchw_blob(crops, mean, self.settings.input_std, swap_rb=self.settings.channel_order == "rgb")


def l2_normalise(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: NDArray[np.float32] = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return normalised
