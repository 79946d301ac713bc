"""Faces-topic records that killed the cluster stage before are dead-lettered instead of killing it on every
start: the embed stage's guard (workers/plumbing/crash_guard.py), with its marks kept in Redis.

The cluster stage commits its offsets in Kafka transactions, whose metadata cannot carry a mark, so before a
group of records runs, each faces partition it reads gets a ``trying`` mark in Redis (one key per consumer
group and partition, outside the spaces' hash slots), and the mark is deleted once the group's transaction has
committed. A worker that places a partition whose mark is still there knows its former owner died inside that
range: it runs those records one at a time, each marked alone, and a record whose own mark survives two deaths
is a ``crashed_worker`` dead letter, the records behind it served. The cost is two Redis round trips a batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from confluent_kafka import Message

from clustering.redis_state.redis_client import RedisClient
from workers.plumbing.crash_guard import (
    DEATHS_TO_REFUSE,
    CrashMarks,
    Verdict,
    WorkerCrashError,
    groups,
    ranges,
    with_trying,
)


def mark_key(group: str, topic: str, partition: int) -> str:
    """The Redis key of a faces partition's mark, for one consumer group: beside the space registry's keys, so
    the cluster stage's Redis user needs no other key pattern (a topic name has no colon: no key is both)."""
    return f"fs-registry:trying:{group}:{topic}:{partition}"


class ClusterCrashGuard:
    def __init__(self, client: RedisClient, group: str, topic: str) -> None:
        self.client = client
        self.group = group
        self.topic = topic
        self.marks = CrashMarks(topic)
        #: Partitions whose mark was read since they were assigned.
        self._read: set[int] = set()

    def _key(self, partition: int) -> str:
        return mark_key(self.group, self.topic, partition)

    def _read_mark(self, partition: int) -> None:
        """Reads the mark a former owner of ``partition`` left, if it died running records of it."""
        raw = self.client.get(self._key(partition))
        self.marks.assigned(partition, raw.decode() if isinstance(raw, bytes) else raw)
        self._read.add(partition)

    def revoked(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.marks.revoked(partition)
            self._read.discard(partition)

    def refusal(self, partition: int, offset: int) -> WorkerCrashError | None:
        """Why the faces record at ``offset`` is refused, if workers died running it alone."""
        if self.marks.verdict(partition, offset) is not Verdict.REFUSE:
            return None
        where = f"{self.topic}[{partition}]@{offset}"
        return WorkerCrashError(f"cluster workers died applying record {where} {DEATHS_TO_REFUSE} times")

    def groups(self, messages: list[Message]) -> Iterator[list[Message]]:
        """``messages`` in the groups they run in, each marked in Redis before it is yielded: records of a
        range a worker died in run one at a time; the others (and those refused, which do not run) together."""
        at = [self._faces_at(message) for message in messages]
        for partition in {where[0] for where in at if where is not None} - self._read:
            self._read_mark(partition)
        verdicts = [Verdict.RUN if where is None else self.marks.verdict(*where) for where in at]
        # A refused record runs with the others: it is dead-lettered when applied, and committed with them.
        for indexes in groups([Verdict.RUN if v is Verdict.REFUSE else v for v in verdicts]):
            faces = [where for where in (at[i] for i in indexes) if where is not None]
            if faces:
                with self.client.pipeline(transaction=False) as pipe:
                    for partition, (first, last) in ranges(faces).items():
                        pipe.set(self._key(partition), with_trying("", self.marks.mark(partition, first, last)))
                    pipe.execute()
            yield [messages[i] for i in indexes]

    def ran(self, group: list[Message]) -> None:
        """The group's transaction committed: its marks go."""
        partitions = sorted({where[0] for where in map(self._faces_at, group) if where is not None})
        if partitions:
            with self.client.pipeline(transaction=False) as pipe:
                for partition in partitions:
                    pipe.delete(self._key(partition))
                pipe.execute()

    def _faces_at(self, message: Message) -> tuple[int, int] | None:
        """(partition, offset) of a faces-topic record; None for another topic's, or a consumer error."""
        if message.topic() != self.topic or message.error() is not None:
            return None
        return message.partition() or 0, message.offset() or 0
