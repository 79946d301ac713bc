"""The Redis keys of one identity space, all under the hash tag ``{fs:<space>}`` so that a space fits one Redis
Cluster slot, named by ``Key`` in the order the apply script takes them (clustering/redis_state/lua/apply_batch.lua)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Key(StrEnum):
    """A space's hashes, counters and lists, in the apply script's KEYS order."""

    FACES = "faces"  # face or event id -> label (-1 for an event)
    META = "meta"
    EMBEDDINGS = "embeddings"
    NEIGHBOURS = "neighbours"
    PARENTS = "parents"
    CLUSTERS = "clusters"
    OFFSETS = "offsets"  # partition -> last applied offset
    COUNT = "count"
    OUTBOX = "outbox"  # events of applied faces not yet published
    WRITER = "writer"  # the writer lease
    LINKS = "links"
    MARKS = "marks"
    COMMANDS = "commands"
    TOMBSTONES = "tombstones"
    SIZES = "sizes"  # cluster root -> size_score(size, root): the clusters largest first, for paged listing
    THUMBNAILS = "thumbnails"  # face id -> picture, of the faces that are a cluster's representatives only
    NAMES = "names"  # cluster root -> name, of the named clusters only
    APPEARANCES = "appearances"  # event id -> an appearance as the timeline keeps it
    TIMELINE = "timeline"  # the appearances of each identity, newest first (members prefixed by its root)
    APPEARANCE_PICTURES = "appearance-pictures"  # face id -> picture of an appearance's best face

    @property
    def number(self) -> int:
        """Its 1-based KEYS number in the apply script (a correction names the hashes it changes by it)."""
        return list(Key).index(self) + 1


@dataclass(frozen=True)
class SpaceKeys:
    space: str

    def __post_init__(self) -> None:
        if not self.space or any(c in self.space for c in "{}: "):
            raise ValueError(f"identity space {self.space!r} must be non-empty without braces, colons or spaces")

    def of(self, key: Key | str) -> str:
        """The Redis key of the space's ``key`` (a ``Key``, or another part such as ``snapshot``)."""
        return f"{{fs:{self.space}}}:{key}"

    @property
    def script(self) -> list[str]:
        """The apply script's KEYS."""
        return [self.of(key) for key in Key]
