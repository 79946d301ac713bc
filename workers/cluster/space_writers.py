"""The identity spaces one cluster worker writes now: each found by the partition its faces are read from,
taken over under its writer lease, and given up with that partition."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from clustering.engine import OnlineRankOrder
from clustering.redis_state.lease import WriterLease
from clustering.redis_state.redis_client import RedisClient
from workers.cluster.cluster_counters import ClusterCounters
from workers.cluster.positions import Positions
from workers.cluster.space_writer import SpaceWriter
from workers.errors import WorkerError
from workers.settings import Settings

log = logging.getLogger(__name__)


class SpaceRefusedError(WorkerError, ValueError):
    """A record whose space this worker will not write: its dead letter's reason says why."""

    reason = "space_refused"


class WrongPartitionError(SpaceRefusedError):
    """A face of a space whose faces are on another partition (a producer that did not key by space)."""

    reason = "wrong_partition"


class SpaceNotAllowedError(SpaceRefusedError):
    """A space missing from the allow-list (FACESTREAM_WORKER__SPACES)."""

    reason = "space_not_allowed"


class TooManySpacesError(SpaceRefusedError):
    """A new space beyond FACESTREAM_WORKER__MAX_SPACES: each costs an index and a lease thread."""

    reason = "too_many_spaces"


class SpaceWriters:
    def __init__(
        self, settings: Settings, client: RedisClient, positions: Positions, counters: ClusterCounters
    ) -> None:
        self.settings = settings
        self.client = client
        self.positions = positions
        self.counters = counters
        self._writers: dict[str, SpaceWriter] = {}
        #: One lease per space ever written, so that a space taken back keeps its token.
        self._leases: dict[str, WriterLease] = {}

    def __iter__(self) -> Iterator[SpaceWriter]:
        return iter(list(self._writers.values()))

    def __len__(self) -> int:
        return len(self._writers)

    def names(self) -> list[str]:
        return list(self._writers)

    def engine_of(self, space: str) -> OnlineRankOrder | None:
        """The engine of ``space`` if this worker writes it now."""
        writer = self._writers.get(space)
        return None if writer is None else writer.engine

    def take_over(self, space: str, partition: int) -> SpaceWriter | SpaceRefusedError | None:
        """The writer of ``space`` for a face read from ``partition``: taken over if it is not yet, an error if
        the space lives on another partition or may not be written here, None while another worker holds its
        lease."""
        writer = self._writers.get(space)
        if writer is not None:
            if writer.home == partition:
                writer.used = time.monotonic()
                return writer
            return WrongPartitionError(f"space {space} lives on partition {writer.home}, not {partition}")
        refusal = self._refusal(space, partition)
        if refusal is not None:
            return refusal
        lease = self._leases.get(space)
        if lease is None:  # made once: a space whose lease another worker holds is asked for every turn
            lease = self._leases[space] = WriterLease(self.client, space, self.settings.worker.lease_ttl_s)
        writer = SpaceWriter(self.settings, self.client, lease)
        home = writer.home_elsewhere(partition)
        if home is not None:
            return WrongPartitionError(f"space {space} lives on partition {home}, not {partition}")
        self.positions.registry.add(partition, space)  # before anything of it is applied
        if not writer.take_over(partition, self.positions.published_below(partition)):
            return None
        self._writers[space] = writer
        self.counters.takeovers += 1
        return writer

    def _refusal(self, space: str, partition: int) -> SpaceRefusedError | None:
        """Why a space this worker does not write yet may not be taken over, if it may not. The cap counts new
        spaces only: one that has faces on the partition already is taken over, or what it holds is stranded."""
        config = self.settings.worker
        if config.spaces and space not in config.spaces:
            return SpaceNotAllowedError(f"space {space} is not in FACESTREAM_WORKER__SPACES")
        if len(self._writers) >= config.max_spaces and space not in self.positions.registry.spaces(partition):
            return TooManySpacesError(f"this worker writes {len(self._writers)} spaces already (max_spaces)")
        return None

    def release_idle(self) -> list[str]:
        """Hands over the spaces that had no record for ``space_idle_s``, every event of theirs published: each
        is recorded as read through its partition's committed offset and leaves the partition's registry first,
        so placing the partition again neither reads their past again nor takes them over. Their state stays in
        Redis; their next record takes them over again. Returns their names."""
        idle_s = self.settings.worker.space_idle_s
        released: list[str] = []
        if not idle_s:
            return released
        for space, writer in list(self._writers.items()):
            home = writer.home
            committed = None if home is None else self.positions.committed_below(home)
            if home is None or committed is None or time.monotonic() - writer.used < idle_s or not writer.settled():
                continue
            writer.store.applied_through(home, committed - 1)
            self.positions.registry.remove(home, space)
            writer.release(hand_over=True)
            del self._writers[space]
            self._leases.pop(space, None)
            released.append(space)
            log.info("space %s: no record for %.0f s, handed over (its state stays in Redis)", space, idle_s)
        return released

    def give_up(self, partitions: set[int]) -> None:
        """Hands over the spaces that live on ``partitions`` (revoked between batches: nothing is uncommitted)."""
        for space, writer in list(self._writers.items()):
            if writer.home in partitions:
                writer.release(hand_over=True)
                del self._writers[space]

    def release_all(self, hand_over: bool = False) -> None:
        for writer in self._writers.values():
            writer.release(hand_over)
        self._writers.clear()
