"""One small base for every ONNX model: a lazily created, injectable session and the graph's input."""

from __future__ import annotations

import threading
from pathlib import Path

from models.errors import ModelError
from models.session import InferenceSession, NodeArg, SessionFactory


class OnnxModel:
    """Owns one model file and creates its session on first use, through the injected factory."""

    def __init__(self, path: Path, session_factory: SessionFactory) -> None:
        self.path = path
        self._session_factory = session_factory
        self._session: InferenceSession | None = None
        self._lock = threading.Lock()

    @property
    def session(self) -> InferenceSession:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    session = self._session_factory(self.path)
                    self._check_graph(session)
                    self._session = session
        return self._session

    def _check_graph(self, session: InferenceSession) -> None:
        """Subclasses reject graphs they cannot run, with a reason."""
        if len(session.get_inputs()) != 1:
            raise ModelError(f"{self.path.name}: expected one input, the graph has {len(session.get_inputs())}")

    @property
    def input(self) -> NodeArg:
        return self.session.get_inputs()[0]

    def fixed_input_hw(self) -> tuple[int, int] | None:
        """Height and width when the graph fixes them, else None (dynamic axes)."""
        shape = list(self.input.shape)
        if len(shape) != 4:
            raise ModelError(f"{self.path.name}: expected an NCHW input, the graph declares {shape}")
        height, width = shape[2], shape[3]
        if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
            return height, width
        return None
