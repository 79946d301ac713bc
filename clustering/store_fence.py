"""The engine's writes to its store, fenced after one fails: the engine's memory may then be ahead of what the
store holds, so every later write is refused until the engine is restored from the store."""

from __future__ import annotations

from collections.abc import Callable

from clustering.store import StoreError


class StoreFence:
    def __init__(self) -> None:
        self.broken = False

    def check(self) -> None:
        """Raises StoreError once a write has failed."""
        if self.broken:
            raise StoreError("a store write failed earlier: restore the engine from its store before going on")

    def write(self, what: str, apply: Callable[[], object]) -> None:
        """Runs one write of ``what``; a failure of any kind fences the store and is raised as a StoreError."""
        try:
            apply()
        except Exception as exc:
            self.broken = True
            raise StoreError(f"could not persist {what}: {exc}") from exc
