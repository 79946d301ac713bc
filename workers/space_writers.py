"""The identity spaces one cluster worker writes now: each found by the partition its faces are read from,
taken over under its writer lease, and given up with that partition."""

from __future__ import annotations

from collections.abc import Iterator

from clustering.engine import OnlineRankOrder
from clustering.lease import WriterLease
from clustering.redis_client import RedisClient
from workers.cluster_counters import ClusterCounters
from workers.positions import Positions
from workers.settings import Settings
from workers.space_writer import SpaceWriter


class WrongPartitionError(ValueError):
    """A face of a space whose faces are on another partition (a producer that did not key by space)."""

    reason = "wrong_partition"


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

    def take_over(self, space: str, partition: int) -> SpaceWriter | WrongPartitionError | None:
        """The writer of ``space`` for a face read from ``partition``: taken over if it is not yet, an error if
        the space lives on another partition, None while another worker holds its lease."""
        writer = self._writers.get(space)
        if writer is not None:
            if writer.home == partition:
                return writer
            return WrongPartitionError(f"space {space} lives on partition {writer.home}, not {partition}")
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
