"""Every error a room raises has that room's root (issue 27), so that a caller can tell, say, the clustering's
failures from everything else with one except clause, and each keeps the built-in base callers catch."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from clustering.errors import ClusteringError
from models.errors import ModelError
from streaming.errors import StreamingError
from workers.errors import WorkerError

ROOTS: dict[str, type[Exception]] = {
    "models": ModelError,
    "clustering": ClusteringError,
    "streaming": StreamingError,
    "workers": WorkerError,
}


def _errors_defined_in(room: str) -> list[type[BaseException]]:
    package = importlib.import_module(room)
    found = []
    for module_info in pkgutil.walk_packages(package.__path__, f"{room}."):
        module = importlib.import_module(module_info.name)
        found += [
            value
            for value in vars(module).values()
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__
        ]
    return found


@pytest.mark.parametrize("room", sorted(ROOTS))
def test_every_error_of_a_room_has_its_root(room: str) -> None:
    errors = _errors_defined_in(room)
    assert len(errors) >= 3
    assert [error.__qualname__ for error in errors if not issubclass(error, ROOTS[room])] == []


def test_errors_keep_the_builtin_base_their_callers_catch() -> None:
    from clustering.correction_state import CorrectionError  # noqa: PLC0415
    from clustering.store import StoreError  # noqa: PLC0415
    from streaming.decode import ImageDecodeError  # noqa: PLC0415
    from streaming.messages import MessageError  # noqa: PLC0415

    assert issubclass(StoreError, RuntimeError)
    assert issubclass(CorrectionError, ValueError)
    assert issubclass(ImageDecodeError, ValueError)
    assert issubclass(MessageError, ValueError)
