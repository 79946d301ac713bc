"""The console of the identity API: its page, script and style, served as they are."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def console_asset(name: str) -> bytes:
    """A file of the console, read from the package once (they do not change while a process runs): what the
    identity API serves, and the stylesheet the gallery of `facestream run` shares."""
    return resources.files(__name__).joinpath(name).read_bytes()
