"""`facestream run --corrections FILE`: a JSON-lines file of the commands topic's commands, applied by the
embedded run as soon as what each names has been clustered, and kept as constraints for the faces after.

A line is one command (docs/messages.md, "commands"); ``version``, ``space`` and ``command_id`` may be left
out (the id is then ``FILE:LINE``); empty lines and lines starting with ``#`` are skipped. A run over the same
sources numbers faces and clusters the same way, so the ids of one run's gallery and clusters.json name the
same faces in the next. A command waits while a face or cluster it names has not arrived yet, or while the
faces of a split (or the face of a reject) are not yet in one cluster; at the end of the run each one still
waiting is tried a last time, and what cannot apply is reported with its line and reason.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from clustering.corrections import CorrectionError, CorrectionReason
from clustering.engine import OnlineRankOrder
from clustering.events import Conflict
from streaming.commands import Command, parse_command
from streaming.messages import MessageError
from workers.cluster.command_corrections import correction_of
from workers.errors import WorkerError

log = logging.getLogger(__name__)

#: What may still change as faces arrive: a command refused for these waits and is tried again.
_WAITING = {
    CorrectionReason.UNKNOWN_FACE,
    CorrectionReason.UNKNOWN_CLUSTER,
    CorrectionReason.FACES_IN_SEVERAL_CLUSTERS,
    CorrectionReason.NOT_IN_CLUSTER,
    CorrectionReason.NOTHING_TO_MERGE,
}


class CorrectionsFileError(WorkerError, ValueError):
    """Lines of a corrections file that are not valid commands; the run does not start."""


@dataclass(frozen=True)
class CommandLine:
    number: int
    command: Command


def read_corrections(path: Path, space: str = "default") -> list[CommandLine]:
    """Every command of ``path``; raises CorrectionsFileError naming each bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CorrectionsFileError(f"cannot read corrections file {path}: {exc}") from exc
    lines, errors = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            raw = json.loads(line)
            if isinstance(raw, dict):
                raw = {"version": 1, "space": space, "command_id": f"{path.name}:{number}", **raw}
            lines.append(CommandLine(number, parse_command(json.dumps(raw))))
        except ValueError as exc:  # json's errors and MessageError are ValueErrors
            reason = exc.reason if isinstance(exc, MessageError) else "malformed"
            errors.append(f"{path}:{number}: {reason}: {exc}")
    if errors:
        raise CorrectionsFileError("invalid corrections:\n" + "\n".join(errors))
    return lines


class PendingCorrections:
    """The commands of a file not yet applied, in file order; ``outcomes`` counts what became of each."""

    def __init__(self, lines: list[CommandLine]) -> None:
        self._waiting = lines
        self.outcomes: Counter[str] = Counter()

    def apply_ready(self, engine: OnlineRankOrder, *, last_try: bool = False) -> None:
        """Applies every waiting command that can apply now; with ``last_try``, reports those that cannot."""
        still: list[CommandLine] = []
        for line in self._waiting:
            try:
                outcome = engine.correct(correction_of(line.command))
            except CorrectionError as exc:
                if exc.reason in _WAITING and not last_try:
                    still.append(line)
                    continue
                self.outcomes[exc.reason.value] += 1
                log.warning("correction on line %d not applied (%s): %s", line.number, exc.reason.value, exc)
                continue
            if outcome is None:
                self.outcomes["duplicate"] += 1  # a command id used on an earlier line
            elif isinstance(outcome, Conflict):
                self.outcomes["conflict"] += 1
                log.warning("correction on line %d conflicts with an earlier one: %s", line.number, outcome.reason)
            else:
                self.outcomes["applied"] += 1
        self._waiting = still
