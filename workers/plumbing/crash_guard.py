"""Frames that killed the embed stage before are dead-lettered instead of killing it on every start.

Before a group of frames runs, the commit of each of its partitions is written again where it stands, with
the group's offsets as ``trying`` in its metadata; the commit after a finished batch has no ``trying``. So a
worker given a partition whose commit still says ``trying`` knows its former owner died inside that range (a
crash in native code, the kernel's OOM killer, anything no ``except`` can catch). It runs those frames one at
a time, each marked alone; a frame whose own mark survives two deaths is a ``crashed_worker`` dead letter,
and the frames behind it are served. A death for another reason (a node lost) while a lone frame runs costs
that frame one retry, not a dead letter.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from workers.embed.commit_points import CommitPoints
from workers.errors import WorkerError

log = logging.getLogger(__name__)

#: Deaths inside a single frame's own mark before that frame is refused.
DEATHS_TO_REFUSE = 2


@dataclass(frozen=True)
class Trying:
    """Offsets ``first`` to ``last`` of a partition were running when ``deaths`` workers died, so far."""

    first: int
    last: int
    deaths: int

    def holds(self, offset: int) -> bool:
        return self.first <= offset <= self.last


def parse_trying(metadata: str | None) -> Trying | None:
    """The ``trying`` mark of a commit's metadata, if it has a readable one."""
    try:
        first, last, deaths = json.loads(metadata or "{}").get("trying")
        return Trying(int(first), int(last), int(deaths))
    except (ValueError, TypeError, AttributeError):
        return None


def with_trying(metadata: str, trying: Trying) -> str:
    """``metadata`` (a commit's, JSON or empty) with ``trying`` set."""
    try:
        fields = json.loads(metadata) if metadata else {}
    except ValueError:
        fields = {}
    fields = fields if isinstance(fields, dict) else {}
    fields["trying"] = [trying.first, trying.last, trying.deaths]
    return json.dumps(fields, separators=(",", ":"))


class Verdict(Enum):
    RUN = "run"  # with the others
    ALONE = "alone"  # a former owner died in its range: run it on its own, marked alone
    REFUSE = "refuse"  # its own mark survived DEATHS_TO_REFUSE deaths


class CrashMarks:
    """The ``trying`` marks found on the partitions held, and the marks to write before a group runs."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._found: dict[int, Trying] = {}

    def assigned(self, partition: int, metadata: str | None) -> None:
        trying = parse_trying(metadata)
        if trying is None:
            self._found.pop(partition, None)
            return
        self._found[partition] = trying
        log.warning(
            "partition %d: %d worker(s) died running offsets %d to %d; they run one at a time (a frame that "
            "kills %d is dead-lettered)",
            partition,
            trying.deaths,
            trying.first,
            trying.last,
            DEATHS_TO_REFUSE,
        )

    def revoked(self, partition: int) -> None:
        self._found.pop(partition, None)

    def verdict(self, partition: int, offset: int) -> Verdict:
        found = self._found.get(partition)
        if found is None or not found.holds(offset):
            return Verdict.RUN
        if found.first == found.last and found.deaths >= DEATHS_TO_REFUSE:
            return Verdict.REFUSE
        return Verdict.ALONE

    def mark(self, partition: int, first: int, last: int) -> Trying:
        """The mark to write before offsets ``first`` to ``last`` run: one more death than a mark found
        around them, if one is."""
        found = self._found.get(partition)
        before = found.deaths if found is not None and found.first <= last and first <= found.last else 0
        if found is not None and first > found.last:
            del self._found[partition]  # past the range: it ran through
        return Trying(first, last, before + 1)

    def marks(self, group: list[tuple[int, int]], standing: Callable[[int], tuple[int, str]]) -> list[TopicPartition]:
        """The commits to write before ``group`` ((partition, offset) pairs) runs: each of its partitions'
        commit where it stands (``standing(partition)``: offset and metadata), marked with the group's range."""
        commits = []
        for partition, (first, last) in sorted(ranges(group).items()):
            offset, metadata = standing(partition)
            mark = with_trying(metadata, self.mark(partition, first, last))
            commits.append(TopicPartition(self.topic, partition, offset, metadata=mark))
        return commits


def ranges(at: Iterable[tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """(partition, offset) pairs as each partition's first and last offset."""
    found: dict[int, tuple[int, int]] = {}
    for partition, offset in at:
        first, last = found.get(partition, (offset, offset))
        found[partition] = (min(first, offset), max(last, offset))
    return found


class WorkerCrashError(WorkerError, RuntimeError):
    """A frame refused because workers died running it."""


def groups(verdicts: list[Verdict]) -> Iterator[list[int]]:
    """Indexes of a batch's messages, by ``verdicts``, in the groups they run in: consecutive ``RUN`` ones
    together, each ``ALONE`` one by itself; ``REFUSE`` ones in none."""
    run: list[int] = []
    for index, verdict in enumerate(verdicts):
        if verdict is Verdict.RUN:
            run.append(index)
            continue
        if run:
            yield run
            run = []
        if verdict is Verdict.ALONE:
            yield [index]
    if run:
        yield run


class CrashGuard:
    """The embed worker's side: a batch in the groups it runs in, each marked on the broker before it runs."""

    def __init__(self, topic: str, consumer: Consumer, commits: CommitPoints) -> None:
        self.marks = CrashMarks(topic)
        self.consumer = consumer
        self.commits = commits

    def assigned(self, partition: int, metadata: str | None) -> None:
        self.marks.assigned(partition, metadata)

    def revoked(self, partition: int) -> None:
        self.marks.revoked(partition)

    def groups(self, usable: list[Message], refuse: Callable[[Message, Exception], None]) -> Iterator[list[Message]]:
        """``usable`` in the groups it runs in, each marked before it is yielded; ``refuse`` gets the frames
        that killed workers before (to dead-letter them)."""
        at = [(message.partition() or 0, message.offset() or 0) for message in usable]
        verdicts = [self.marks.verdict(partition, offset) for partition, offset in at]
        for message, verdict in zip(usable, verdicts, strict=True):
            if verdict is Verdict.REFUSE:
                where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
                refuse(message, WorkerCrashError(f"workers died running frame {where} {DEATHS_TO_REFUSE} times"))
        for indexes in groups(verdicts):
            marks = self.marks.marks([at[i] for i in indexes], self._standing)
            try:
                self.consumer.commit(offsets=marks, asynchronous=False)
                self.commits.committed(marks)
            except KafkaException as exc:  # unmarked, a crash in this group replays as it always did
                log.warning("could not mark the frames about to run (%s)", exc)
            yield [usable[i] for i in indexes]

    def _standing(self, partition: int) -> tuple[int, str]:
        """Where the partition's commit stands; with none yet, its first offset (where a replay starts too)."""
        standing = self.commits.standing(partition)
        if standing is not None:
            return standing
        low, _ = self.consumer.get_watermark_offsets(TopicPartition(self.marks.topic, partition), timeout=10)
        return int(low), ""
