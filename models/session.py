"""ONNX Runtime sessions: execution-provider choice and a factory that models receive by injection."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from models.errors import ModelError, RuntimeMissingError

log = logging.getLogger(__name__)

#: Our order of preference; what onnxruntime offers on this machine filters it.
PROVIDER_PREFERENCE: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


class NodeArg(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def shape(self) -> Sequence[int | str | None]: ...


class InferenceSession(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the models use; tests may inject their own."""

    def get_inputs(self) -> Sequence[NodeArg]: ...

    def get_outputs(self) -> Sequence[NodeArg]: ...

    def get_providers(self) -> list[str]: ...

    def run(self, output_names: Sequence[str] | None, input_feed: dict[str, Any]) -> list[Any]: ...


SessionFactory = Callable[[Path], InferenceSession]


def choose_providers(preferred: Sequence[str], available: Sequence[str]) -> list[str]:
    """Providers from ``preferred`` that onnxruntime offers, in our order.

    Raises ModelError when none is left, naming what is available, so a GPU-only configuration on a
    CPU-only install fails at start-up rather than silently running somewhere else.
    """
    chosen = [p for p in preferred if p in available]
    if not chosen:
        raise ModelError(
            f"none of the configured execution providers {list(preferred)} is available; "
            f"this onnxruntime offers {list(available)}"
        )
    return chosen


def _onnxruntime() -> Any:
    try:
        import onnxruntime  # noqa: PLC0415 - optional dependency, imported when a model first loads
    except ImportError as exc:
        raise RuntimeMissingError(
            "onnxruntime is not installed: install facestream with the 'cpu' or the 'gpu' extra"
        ) from exc
    return onnxruntime


@dataclass(frozen=True)
class OrtSessionFactory:
    """Creates onnxruntime sessions with our provider preference and thread limits."""

    providers: tuple[str, ...] = PROVIDER_PREFERENCE
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    spin_wait: bool = False

    def __call__(self, path: Path) -> InferenceSession:
        ort = _onnxruntime()
        chosen = choose_providers(self.providers, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin_wait else "0")
        # Warnings only: graphs exported with a fixed batch of 1 warn on every batched run otherwise.
        options.log_severity_level = 3
        try:
            session: InferenceSession = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"onnxruntime could not load {path}: {exc}") from exc
        log.info("loaded %s with providers %s (asked for %s)", path.name, session.get_providers(), chosen)
        return session
