"""Processes a test session leaves behind: every process the tests start inherits a marker in its environment,
and at the session's end any that still carries it (a worker, a broker, a camera server, orphaned or not) is
named, killed and fails the session."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

#: The environment variable whose value marks this session's processes.
MARKER = "FACESTREAM_TEST_SESSION"


def mark_session() -> str:
    """Marks this process, and so every process it starts with its environment, as this session's."""
    os.environ[MARKER] = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return os.environ[MARKER]


def marked_processes(session: str) -> dict[int, str]:
    """pid -> command line of every other process of this user whose environment carries ``session``."""
    needle = f"{MARKER}={session}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            status = (entry / "status").read_text()
        except OSError:
            continue  # gone meanwhile, or another user's
        if "\nState:\tZ" not in status:  # a zombie holds nothing but its exit status for its parent
            found[int(entry.name)] = command
    return found


def reap_leftovers(session: str, grace_s: float = 10.0) -> dict[int, str]:
    """The marked processes still alive after ``grace_s`` (those just exiting get the time to), killed."""
    deadline = time.monotonic() + grace_s
    while (left := marked_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left
