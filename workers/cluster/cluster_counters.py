"""What a cluster worker did, counted for its summary line and its metrics."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from clustering.redis_state.redis_records import OutboxEntry
from streaming.commands import Command
from streaming.messages import FaceRecord, TrackRecord
from workers.cluster.space_writer import Outcome
from workers.plumbing import metrics

ClusterInput = FaceRecord | TrackRecord | Command


@dataclass
class ClusterCounters:
    faces: int = 0
    duplicates: int = 0
    merges: int = 0
    appearances: int = 0
    takeovers: int = 0
    #: Spaces handed over after ``space_idle_s`` without a record.
    idle_releases: int = 0
    #: Commands read from the commands topic and forwarded to their space's writer.
    commands: int = 0
    #: Commands applied, by outcome.
    corrections: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)

    def count(self, record: ClusterInput, outcome: Outcome, entries: list[OutboxEntry]) -> None:
        """Counts one applied record, and its metrics."""
        if outcome is Outcome.REPEAT:
            self.duplicates += 1
            metrics.DUPLICATE_FACES.inc()
        elif outcome is not Outcome.FRESH:
            return
        elif isinstance(record, TrackRecord):
            self.appearances += 1
            metrics.APPEARANCES.inc()
        elif isinstance(record, FaceRecord):
            if record.embedding:
                merged = sum(len(m.absorbed) for entry in entries for m in entry.merges)
                self.faces += 1
                self.merges += merged
                metrics.FACES_CLUSTERED.inc()
                metrics.MERGES.inc(merged)
        else:
            for entry in entries:
                kind = str(json.loads(entry.correction or "{}").get("type", "conflict"))
                self.corrections[kind] += 1
                metrics.CORRECTIONS.labels(kind).inc()

    def summary(self) -> str:
        return (
            f"stopped: {self.faces} faces clustered, {self.appearances} appearances, {self.duplicates} repeats "
            f"ignored, {self.merges} merges, corrections: {dict(self.corrections) or 'none'}, "
            f"dead letters: {dict(self.dead_letters) or 'none'}, identity spaces taken over: {self.takeovers}, "
            f"released idle: {self.idle_releases}"
        )
