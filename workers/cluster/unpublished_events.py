"""A space writer's events that Redis holds in its outbox and the identities topic may not have yet: those
left by a former writer (their records are read again, and they go out with them), and those recorded or
published again in the open batch (dropped from the outbox once its transaction commits)."""

from __future__ import annotations

from collections import defaultdict

from clustering.redis_state.redis_records import OutboxEntry


class UnpublishedEvents:
    def __init__(self) -> None:
        #: Entries a former writer applied but never saw published, by (partition, offset) of their record.
        self._left: defaultdict[tuple[int, int], list[OutboxEntry]] = defaultdict(list)
        #: Entries recorded or published again in the open batch.
        self.in_batch = 0

    def take_over(self, outbox: list[OutboxEntry], published_below: int) -> int:
        """Keeps the outbox's entries of records at or past ``published_below`` (the partition's committed
        offset: those before it were published); returns how many were published."""
        published = 0
        while published < len(outbox) and outbox[published].offset < published_below:
            published += 1
        for entry in outbox[published:]:
            self._left[entry.partition, entry.offset].append(entry)
        return published

    def fresh(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        """Entries applied now, in the open batch."""
        self.in_batch += len(entries)
        return entries

    def again(self, at: tuple[int, int]) -> list[OutboxEntry]:
        """The entries a former writer left for the record at ``at``, published again in the open batch."""
        return self.fresh(self._left.pop(at, []))

    def committed(self) -> int:
        """The open batch committed: how many of the outbox's first entries to drop."""
        done, self.in_batch = self.in_batch, 0
        return done

    def settled(self) -> bool:
        """Whether every event was published and no record waits to be read again."""
        return not self._left and not self.in_batch
