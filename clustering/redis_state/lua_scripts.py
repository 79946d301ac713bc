"""The Lua scripts of the clustering state, read once per process from the package (every store, lease and
snapshot writer registers them; register_script only hashes the text)."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def lua(name: str) -> str:
    """The text of ``clustering/redis_state/lua/<name>``."""
    return resources.files("clustering.redis_state").joinpath("lua", name).read_text(encoding="utf-8")
