"""The session's own check that the tests leave no process behind finds an orphan and kills it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.leftovers import MARKER, marked_processes, reap_leftovers
from tests.local_services import wait_for


def test_a_process_left_running_by_a_session_is_found_by_its_mark_and_killed() -> None:
    session = "probe-session"
    # A grandchild whose parent exits at once, as a worker orphaned by a killed test would be.
    starter = (
        "import subprocess, sys; "
        "print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"
    )
    done = subprocess.run(
        [sys.executable, "-c", starter], env={**os.environ, MARKER: session}, capture_output=True, text=True, check=True
    )
    orphan = int(done.stdout)
    try:
        assert list(marked_processes(session)) == [orphan]
        assert list(reap_leftovers(session, grace_s=0.5)) == [orphan]
        wait_for(lambda: not marked_processes(session), 10, "the orphan killed")  # SIGKILL lands asynchronously
    finally:
        if orphan in marked_processes(session):
            os.kill(orphan, signal.SIGKILL)
