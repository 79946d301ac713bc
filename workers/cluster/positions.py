"""Where a cluster worker reads each partition of the faces topic it was given, and what of it was published.

A partition given to the worker stays paused until it is placed: read from the oldest position one of its
spaces needs (the faces after the last one Redis applied; the start of the partition for a space Redis lost,
or when Redis knows no space of it), never after the committed offset, whose faces' events may still wait in
an outbox. Faces below the committed offset had their events published: applied again, they publish nothing.
A partition whose next face belongs to a space another worker still writes (its lease has not lapsed yet)
waits, paused at that face, until the lease is free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from clustering.redis_state.redis_client import RedisClient
from clustering.redis_state.redis_store import RedisStore
from clustering.redis_state.space_registry import SpaceRegistry
from workers.cluster.space_writer import SpaceWriter

log = logging.getLogger(__name__)

_COMMITTED_TIMEOUT_S = 5.0
_MARK_QUIET_S = 30.0

TakeOver = Callable[[str, int], object | None]


class Positions:
    def __init__(self, consumer: Consumer, client: RedisClient, topic: str) -> None:
        self.consumer = consumer
        self.client = client
        self.topic = topic
        self.registry = SpaceRegistry(client, topic)
        self._unplaced: set[int] = set()
        #: Placed partitions: the offset below which their events were published.
        self._published: dict[int, int] = {}
        #: Partitions paused at a face whose space's lease another worker holds: (offset, space).
        self._waiting: dict[int, tuple[int, str]] = {}
        #: The offsets this worker committed last, per placed partition.
        self._committed: dict[int, int] = {}
        self._marked = time.monotonic()

    @property
    def assigned(self) -> set[int]:
        return self._unplaced | set(self._published)

    @property
    def waiting(self) -> set[str]:
        return {space for _, space in self._waiting.values()}

    def assign(self, partitions: list[int]) -> None:
        self._unplaced.update(partitions)

    def revoke(self, partitions: set[int]) -> None:
        self._unplaced -= partitions
        for partition in partitions:
            self._published.pop(partition, None)
            self._waiting.pop(partition, None)
            self._committed.pop(partition, None)

    def committed(self, offsets: list[TopicPartition]) -> None:
        """A transaction committed these offsets."""
        for tp in offsets:
            if tp.partition in self._published:
                self._committed[tp.partition] = tp.offset

    def mark_quiet_spaces(self, writers: Iterable[SpaceWriter]) -> None:
        """Records, every 30 s, how far each space's partition was read, also for spaces that had no face in
        it: a partition given to another worker is then read again from there, not from a quiet space's last
        face."""
        if time.monotonic() - self._marked < _MARK_QUIET_S:
            return
        self._marked = time.monotonic()
        for writer in writers:
            committed = None if writer.home is None else self._committed.get(writer.home)
            if writer.home is not None and committed is not None:
                writer.store.applied_through(writer.home, committed - 1)

    def unplace(self) -> None:
        """After a failure: every partition is placed again from what Redis and Kafka hold."""
        self._unplaced |= set(self._published)
        self._published.clear()
        self._waiting.clear()
        self._committed.clear()
        if self._unplaced:
            self.consumer.pause(self._tps(self._unplaced))

    def reading(self, partition: int) -> bool:
        """Whether a consumed face is to be handled now (else it is read again later)."""
        return partition in self._published and partition not in self._waiting

    def committed_below(self, partition: int) -> int | None:
        """The offset this worker last committed on ``partition``, if it committed there since placing it."""
        return self._committed.get(partition)

    def published_below(self, partition: int) -> int:
        return self._published.get(partition, 0)

    def wait(self, partition: int, offset: int, space: str) -> None:
        """Stops reading ``partition`` at ``offset`` until ``space``'s lease is free."""
        if partition in self._waiting:
            return
        log.info("partition %d waits at offset %d for the writer lease of space %s", partition, offset, space)
        self._waiting[partition] = (offset, space)
        tp = TopicPartition(self.topic, partition, offset)
        self.consumer.pause([tp])
        self.consumer.seek(tp)

    def place(self, take_over: TakeOver) -> bool:
        """Places the partitions given since the last call and retries waiting ones; True when all are placed."""
        if self._unplaced:
            partitions = sorted(self._unplaced)
            try:
                found = self.consumer.committed(self._tps(partitions), timeout=_COMMITTED_TIMEOUT_S)
            except KafkaException as exc:
                # A dead worker's open transaction holds its offsets until the broker aborts it. The partitions
                # placed already go on meanwhile.
                log.info("the committed offsets of %s %s are not readable yet (%s)", self.topic, partitions, exc)
                return False
            for tp in found:
                self._place(tp.partition, max(tp.offset, 0), take_over)
        for partition, (_, space) in list(self._waiting.items()):
            if take_over(space, partition) is not None:
                del self._waiting[partition]
                self.consumer.resume(self._tps([partition]))
        return not self._unplaced

    def _place(self, partition: int, committed: int, take_over: TakeOver) -> None:
        """Seeks to where the partition is to be read from and takes its known spaces over, so that their
        engines are ready before their next face (a space whose lease is still held makes it wait)."""
        spaces = self.registry.spaces(partition)
        start = self._start(partition, committed, spaces)
        log.info(
            "reading %s[%d] from %s (committed: %d; spaces: %d)",
            self.topic,
            partition,
            "its start" if start == OFFSET_BEGINNING else start,
            committed,
            len(spaces),
        )
        self.consumer.seek(TopicPartition(self.topic, partition, start))
        self._published[partition] = committed
        self._unplaced.discard(partition)
        held = next((space for space in sorted(spaces) if take_over(space, partition) is None), None)
        if held is None:
            self.consumer.resume(self._tps([partition]))
        else:
            self._waiting[partition] = (start, held)

    def _start(self, partition: int, committed: int, spaces: set[str]) -> int:
        if not spaces:
            return OFFSET_BEGINNING  # nothing applied yet, or Redis lost everything: rebuild from the start
        start = committed
        for space in spaces:
            applied = RedisStore(self.client, space).offsets().get(partition)
            if applied is None:
                log.warning("identity space %s is gone from Redis: rebuilding it from the faces topic", space)
                return OFFSET_BEGINNING
            start = min(start, applied + 1)
        return start

    def _tps(self, partitions: list[int] | set[int]) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in sorted(partitions)]
