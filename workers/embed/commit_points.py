"""Where the embed worker may commit: never past a frame whose appearance is not yet reported.

A track's appearance is published when the track ends, often many frames after its first. Committing a batch's
end while a track is open would lose that appearance to a crash: the next owner of the partition starts after
frames nobody reported. So each partition's commit stays at the first frame of the oldest appearance still open
on any of its cameras (or the batch's end when none is), and a replay starts new tracks from there.

A partition carries many cameras, and the commit point is held back by the one with the oldest open track; the
others have reported everything up to later offsets. The commit metadata keeps, per camera, the offset from
which it still needs its frames (``resume``), so the next owner skips a camera's frames before that offset
instead of reporting them twice. The metadata is bounded (Kafka's ``offset.metadata.max.bytes`` is 4 KiB by
default): past the bound, the cameras nearest the commit point are left out, and those replay a little more.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import TopicPartition

log = logging.getLogger(__name__)

METADATA_MAX_BYTES = 3_500  # under Kafka's default offset.metadata.max.bytes (4,096), with room for the JSON


@dataclass
class _Partition:
    #: Camera -> identity space of every camera seen on the partition since it was assigned.
    cameras: dict[str, str] = field(default_factory=dict)
    #: Offset after the last message consumed and delivered; None before the first.
    consumed: int | None = None
    #: Camera -> first offset it still needs, from the commit that handed the partition over.
    resume: dict[str, int] = field(default_factory=dict)
    committed: tuple[int, str] | None = None
    #: The commit found when the partition was assigned (offset, metadata); None when there was none.
    found: tuple[int, str] | None = None


def parse_metadata(metadata: str | None) -> dict[str, int]:
    """The resume map of a commit; an absent, foreign or unreadable one is empty (replay everything)."""
    if not metadata:
        return {}
    try:
        resume = json.loads(metadata).get("resume", {})
        return {str(camera): int(offset) for camera, offset in resume.items()}
    except (ValueError, AttributeError, TypeError):
        log.warning("commit metadata %.80r is not facestream's; the partition replays from its commit", metadata)
        return {}


def format_metadata(resume: dict[str, int]) -> str:
    """The commit metadata for ``resume``, within METADATA_MAX_BYTES (latest resume offsets kept first)."""
    kept: dict[str, int] = {}
    size = len('{"resume":{}}')
    for camera, offset in sorted(resume.items(), key=lambda item: -item[1]):
        entry = len(json.dumps({camera: offset})) - 1  # the pair and its comma
        if size + entry > METADATA_MAX_BYTES:
            break
        kept[camera] = offset
        size += entry
    return json.dumps({"resume": kept}, separators=(",", ":")) if kept else ""


class CommitPoints:
    """Per assigned partition of one topic: its cameras, what was consumed, and where to commit."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._partitions: dict[int, _Partition] = {}

    def assigned(self, partition: int, metadata: str | None, offset: int = -1) -> None:
        found = (offset, metadata or "") if offset >= 0 else None
        self._partitions[partition] = _Partition(resume=parse_metadata(metadata), found=found)

    def standing(self, partition: int) -> tuple[int, str] | None:
        """Where the partition's commit stands now (offset, metadata), if it has one."""
        state = self._partitions.get(partition)
        return None if state is None else state.committed or state.found

    def revoked(self, partition: int) -> None:
        self._partitions.pop(partition, None)

    def cameras_of(self, partition: int) -> dict[str, str]:
        state = self._partitions.get(partition)
        return dict(state.cameras) if state is not None else {}

    def cameras(self) -> dict[str, str]:
        """Camera -> space of every camera on the partitions held."""
        return {c: s for state in self._partitions.values() for c, s in state.cameras.items()}

    def reported_before(self, partition: int, camera: str, offset: int) -> bool:
        """Whether a former owner already reported everything of this camera's frame at ``offset``."""
        state = self._partitions.get(partition)
        return state is not None and offset < state.resume.get(camera, -1)

    def seen(self, partition: int, camera: str, space: str) -> None:
        self._partitions.setdefault(partition, _Partition()).cameras[camera] = space

    def delivered(self, partition: int, next_offset: int) -> None:
        """Everything the worker produced for the partition's messages before ``next_offset`` is acknowledged."""
        state = self._partitions.setdefault(partition, _Partition())
        state.consumed = max(state.consumed or 0, next_offset)

    def to_commit(self, open_since: Callable[[str], int | None]) -> list[TopicPartition]:
        """The commits that move: each partition at its oldest open appearance, or where it was consumed to."""
        commits: list[TopicPartition] = []
        for partition, state in self._partitions.items():
            if state.consumed is None:
                continue
            needs = {camera: open_since(camera) for camera in state.cameras}
            resume = {c: offset if offset is not None else state.consumed for c, offset in needs.items()}
            for camera, offset in state.resume.items():
                resume[camera] = max(resume.get(camera, offset), offset)
            point = min([state.consumed, *(offset for offset in needs.values() if offset is not None)])
            if state.committed is not None:
                point = max(point, state.committed[0])  # a commit never goes back
            state.resume = {c: offset for c, offset in state.resume.items() if offset > point}
            metadata = format_metadata({c: offset for c, offset in resume.items() if offset > point})
            if state.committed is not None and state.committed[0] >= point and state.committed[1] == metadata:
                continue
            commits.append(TopicPartition(self.topic, partition, point, metadata=metadata))
        return commits

    def committed(self, commits: list[TopicPartition]) -> None:
        """Kafka accepted these commits (until then ``to_commit`` offers them again)."""
        for commit in commits:
            state = self._partitions.get(commit.partition)
            if state is not None:
                state.committed = (commit.offset, commit.metadata or "")
