"""One identity space a cluster worker writes: its lease, its engine rebuilt from Redis, and its outbox.

A space lives on one partition of the faces topic (the topic is keyed by space), its home. Taking a space
over: take its writer lease (a standby of a space is a worker waiting for this), rebuild the engine from
Redis by pages, and load the outbox. Outbox entries below the partition's committed offset were published
before and are dropped; the others (Redis applied them, but their Kafka transaction never committed) are
published again when the consumer reads their faces again, in the transaction that commits past them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray
from redis.exceptions import RedisError

from clustering.corrections import CorrectionError
from clustering.engine import OnlineRankOrder
from clustering.events import outcome_json
from clustering.redis_state.compaction import Compactor
from clustering.redis_state.lease import LeaseKeeper, WriterLease
from clustering.redis_state.redis_client import RedisClient
from clustering.redis_state.redis_records import OutboxEntry, Sighting
from clustering.redis_state.redis_store import RedisStore
from streaming.commands import Command
from streaming.messages import FaceRecord, MessageError, TrackRecord
from streaming.pictures import thumbnail_picture
from workers.cluster.command_corrections import correction_of
from workers.cluster.space_restore import restore_space
from workers.cluster.track_pictures import TrackPictures
from workers.cluster.unpublished_events import UnpublishedEvents
from workers.errors import WorkerError
from workers.plumbing import metrics
from workers.plumbing.faces import appearance_event, apply_face, sighting_of
from workers.settings import Settings

log = logging.getLogger(__name__)

#: Longest wait for the last snapshot of a space given up on purpose (the stop's grace is 45 s).
HANDOVER_WAIT_S = 20.0


class LeaseLostError(WorkerError, RuntimeError):
    """Another process holds the writer lease of an identity space this worker was writing."""


class Outcome(StrEnum):
    FRESH = "fresh"  # applied now: its events go out
    REPEAT = "repeat"  # applied before (a replay): its events go out only if they never did
    NONE = "none"  # nothing to apply (a tracked face or track with no clustered face)


def _observe_redis(operation: str, seconds: float) -> None:
    metrics.REDIS_SECONDS.labels(operation).observe(seconds)


class SpaceWriter:
    def __init__(self, settings: Settings, client: RedisClient, lease: WriterLease) -> None:
        """``lease``: this worker's lease of the space, kept across step-downs, so that the worker takes its
        own lease again at once instead of waiting for it to lapse."""
        self.settings = settings
        self.space = space = lease.space
        config = settings.worker
        self.lease = lease
        self.store = RedisStore(
            client,
            space,
            self.lease.token,
            observe=_observe_redis,
            appearances_kept=config.appearances_kept,
            pictures_kept=config.pictures_per_identity,
        )
        #: Pictures of open tracks' faces, until their appearance names its best face.
        self.track_pictures = TrackPictures()
        self.keeper = LeaseKeeper(self.lease, config.writer_stall_s)
        self.engine: OnlineRankOrder | None = None
        self.compactor: Compactor | None = None
        self.home: int | None = None
        #: When a record of the space was last handed to this writer (monotonic seconds).
        self.used = time.monotonic()
        self.events = UnpublishedEvents()
        #: The embeddings of the open batch's faces, decoded once: face id -> (its first record, embedding).
        self._decoded: dict[str, tuple[FaceRecord, NDArray[np.float32]]] = {}

    def home_elsewhere(self, partition: int) -> int | None:
        """The partition this space's faces were applied from, when it is not ``partition``."""
        others = sorted(p for p in self.store.offsets() if p != partition)
        return others[0] if others else None

    def take_over(self, partition: int, published_below: int) -> bool:
        """Becomes this space's writer for its home ``partition``; False while another worker holds the lease."""
        if not self.lease.acquire():
            return False
        started = time.perf_counter()
        self.keeper.start()  # a long restore keeps the lease too
        engine, self.compactor = restore_space(self.store, self.keeper, self.settings, self.lease.token)
        if self.keeper.lost:
            self.release()
            return False
        outbox = self.store.outbox()
        published = self.events.take_over(outbox, published_below)
        self.store.mark_published(published)
        self.engine, self.home = engine, partition
        log.info(
            "writer of identity space %s: %d faces in %d clusters restored, %d event record(s) to publish again "
            "(%.1f s)",
            self.space,
            len(engine),
            engine.cluster_count,
            len(outbox) - published,
            time.perf_counter() - started,
        )
        return True

    def _engine(self) -> OnlineRankOrder:
        if self.engine is None:
            raise RuntimeError(f"identity space {self.space} is not taken over")
        return self.engine

    # -- records -------------------------------------------------------------------------------------------------

    def expect(self, records: Iterable[FaceRecord | TrackRecord | Command], dimension: int) -> None:
        """The records of a batch about to be applied: the index searches of its embedded faces are made
        together (clustering/neighbour_search.py), and their embeddings decoded once."""
        self._decoded = {}
        for record in records:
            if isinstance(record, FaceRecord) and record.embedding and record.face_id not in self._decoded:
                with contextlib.suppress(MessageError):  # refused with its reason when it is applied
                    self._decoded[record.face_id] = (record, record.vector(dimension))
        self._engine().expect({face_id: vector for face_id, (_, vector) in self._decoded.items()})

    def apply(
        self, record: FaceRecord | TrackRecord | Command, dimension: int, at: tuple[int, int]
    ) -> tuple[Outcome, list[OutboxEntry]]:
        """Applies one record read at ``at``; raises MessageError for an unusable embedding or a command that
        names what is not there."""
        if isinstance(record, TrackRecord):
            return self.appearance(record, at)
        if not isinstance(record, FaceRecord):
            return self.correction(record, at)
        if not record.embedding:
            return self.tracked_face(record, at)
        decoded = self._decoded.pop(record.face_id, None)  # when the batch was announced
        vector = decoded[1] if decoded is not None and decoded[0] is record else record.vector(dimension)
        return self.face(record, vector, at)

    def face(
        self, record: FaceRecord, vector: NDArray[np.float32], at: tuple[int, int]
    ) -> tuple[Outcome, list[OutboxEntry]]:
        engine = self._engine()
        count = len(engine)
        picture = thumbnail_picture(record.thumbnail)
        assignment = apply_face(engine, record, vector, at, lambda: picture)
        if len(engine) == count:
            return self._repeat(at)
        if record.track and picture:
            self.track_pictures.keep_face(record.track, record, picture)
        entry = OutboxEntry(
            at[0], at[1], record.face_id, assignment.cluster_id, assignment.merges, record.camera, record.timestamp
        )
        return Outcome.FRESH, self.events.fresh([entry])

    def tracked_face(self, record: FaceRecord, at: tuple[int, int]) -> tuple[Outcome, list[OutboxEntry]]:
        """A tracked face that was not embedded takes its track's cluster."""
        cluster = self._engine().track_cluster(record.track) if record.track else None
        if cluster is None:
            return Outcome.NONE, []
        entry = OutboxEntry(at[0], at[1], record.face_id, cluster, (), record.camera, record.timestamp)
        return self._event(record.face_id, entry)

    def appearance(self, record: TrackRecord, at: tuple[int, int]) -> tuple[Outcome, list[OutboxEntry]]:
        event = appearance_event(self._engine(), record)
        if event is None:
            return Outcome.NONE, []
        entry = OutboxEntry(
            at[0],
            at[1],
            record.best_face or "",
            event.cluster,
            (),
            record.camera,
            record.last_timestamp,
            appearance=event.to_json().decode(),
        )
        picture = self.track_pictures.take(record.track, event.best_face)
        return self._event(f"{record.track}#{record.sequence}", entry, sighting_of(event), picture)

    def correction(self, command: Command, at: tuple[int, int]) -> tuple[Outcome, list[OutboxEntry]]:
        try:
            outcomes = self._engine().correct_in_steps(correction_of(command), at)
        except CorrectionError as exc:
            raise MessageError(exc.reason.value, str(exc)) from exc
        if not outcomes:
            return self._repeat(at)
        # Steps of this erasure that a crash cut short wait in the outbox, unpublished: they go out first.
        entries = [
            OutboxEntry(at[0], at[1], outcome.command_id, -1, (), "", 0.0, correction=outcome_json(outcome))
            for outcome in outcomes
        ]
        return Outcome.FRESH, self.events.again(at) + self.events.fresh(entries)

    def _event(
        self, event_id: str, entry: OutboxEntry, sighting: Sighting | None = None, picture: bytes | None = None
    ) -> tuple[Outcome, list[OutboxEntry]]:
        """Records an event with its offset in Redis (queued in the open batch); an appearance's ``sighting``
        joins its identity's timeline."""
        if not self.store.apply_event(event_id, entry, sighting, picture):
            return self._repeat((entry.partition, entry.offset))
        return Outcome.FRESH, self.events.fresh([entry])

    def _repeat(self, at: tuple[int, int]) -> tuple[Outcome, list[OutboxEntry]]:
        return Outcome.REPEAT, self.events.again(at)

    def committed(self) -> None:
        """The open batch's events are durable on the identities topic: drop them from the outbox."""
        self.store.mark_published(self.events.committed())
        self._decoded.clear()

    # -- keeping and giving back ------------------------------------------------------------------------------

    def settled(self) -> bool:
        """Whether every event of the space was published and no record of it waits to be read again."""
        return self.events.settled()

    def keep(self) -> None:
        """Reports the writer alive to the lease keeper; raises once the lease was lost."""
        self.keeper.progressed()
        if self.keeper.lost:
            raise LeaseLostError(f"identity space {self.space}: {self.keeper.lost}")

    def snapshot_if_due(self) -> None:
        if self.engine is None or self.compactor is None:
            return
        self.compactor.after(self.engine.index)
        for faces, seconds in self.compactor.finished:
            metrics.SNAPSHOT_SECONDS.observe(seconds)
            metrics.SNAPSHOT_FACES.set(faces)
            log.info("index snapshot of %d faces of space %s stored in %.1f s", faces, self.space, seconds)
        self.compactor.finished.clear()

    def _durable(self, engine: OnlineRankOrder) -> bool:
        try:
            return self.store.count() == len(engine)
        except RedisError:
            return False

    def release(self, hand_over: bool = False) -> None:
        """Stops writing and gives the lease back (it lapses on its own if Redis cannot be reached).
        ``hand_over``: the space is given up on purpose (a stop, a rebalance), not after a failure: a last index
        snapshot is stored first, so the next writer inserts again only the faces of the last, partial insert
        block (up to ``index.insert_block - 1``, a fraction of a second)."""
        # Only an engine whose every face is in Redis: a snapshot must never cover faces the store lacks.
        if hand_over and self.engine is not None and self.compactor is not None and self._durable(self.engine):
            started = time.perf_counter()
            if self.compactor.hand_over(self.engine.index, HANDOVER_WAIT_S):
                log.info(
                    "space %s handed over with an index snapshot of %d of its %d faces (%.1f s)",
                    self.space,
                    len(self.engine.index),
                    len(self.engine),
                    time.perf_counter() - started,
                )
            self.snapshot_if_due()  # its metrics
        self.engine = None
        self.keeper.stop()
        if self.compactor is not None:
            self.compactor.stop()
            self.compactor = None
        try:
            self.lease.release()
        except RedisError as exc:
            log.warning(
                "could not release the writer lease of space %s (it lapses in %.0f s): %s",
                self.space,
                self.lease.ttl_ms / 1000,
                exc,
            )
