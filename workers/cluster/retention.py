"""Retention: a cluster worker forgets the faces it stored more than ``retention_days`` ago, continuously.

Each space it writes gets, every period (a 24th of the retention, at least a second and at most an hour), a
``forget`` command with ``stored_before`` = now - retention, forwarded into the faces topic in a transaction
of its own like any command, so it is applied in order with the faces, once (its id names the space and the
period: a restarted worker, or two, send the same command, and only the first applies), and its tombstone
event is published like any correction's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from clustering.store import tombstone
from streaming.commands import ForgetCommand
from workers.cluster.transactions import TransactionalPublisher


class Retention:
    def __init__(self, days: float) -> None:
        self.seconds = days * 86_400
        self.period = min(3600.0, max(1.0, self.seconds / 24))
        #: Space -> the last period a command was made for.
        self._sent: dict[str, int] = {}

    def due(self, spaces: Iterable[str], now: float | None = None) -> list[ForgetCommand]:
        """The commands to forward now, for the spaces this worker writes."""
        if not self.seconds:
            return []
        now = time.time() if now is None else now
        period = int(now // self.period)
        commands = []
        for space in spaces:
            if self._sent.get(space) == period:
                continue
            self._sent[space] = period
            commands.append(
                ForgetCommand(
                    command_id=f"retention:{tombstone(space)[:16]}:{period}",
                    space=space,
                    stored_before=period * self.period - self.seconds,
                )
            )
        return commands

    def forward(self, publisher: TransactionalPublisher, spaces: Iterable[str]) -> None:
        """Forwards the commands due into the faces topic, in a transaction of their own."""
        commands = self.due(spaces)
        if commands:
            publisher.begin()
            for command in commands:
                publisher.forward(command.space, command.to_json())
            publisher.commit([])
