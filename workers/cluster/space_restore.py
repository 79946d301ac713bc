"""A space's engine rebuilt from Redis when a worker becomes its writer: read by pages with progress in the log
(each page keeps the writer lease alive), and the compactor that stores its index snapshots from then on."""

from __future__ import annotations

import gc
import logging
import time

from clustering.engine import OnlineRankOrder
from clustering.redis_state.compaction import Compactor, SnapshotJob
from clustering.redis_state.lease import LeaseKeeper
from clustering.redis_state.redis_store import RedisStore
from workers.plumbing import metrics
from workers.settings import Settings

log = logging.getLogger(__name__)

#: Seconds between the log lines of a long restore.
PROGRESS_EVERY_S = 10.0


def restore_space(
    store: RedisStore, keeper: LeaseKeeper, settings: Settings, token: str
) -> tuple[OnlineRankOrder, Compactor]:
    """The engine of ``store``'s space, and its compactor (snapshots fenced by the writer ``token``)."""
    started = logged = time.monotonic()

    def progress(loaded: int, total: int) -> None:
        nonlocal logged
        keeper.progressed()
        if time.monotonic() - logged >= PROGRESS_EVERY_S:
            logged = time.monotonic()
            log.info("restoring identity space %s: %d of %d faces read from Redis", store.space, loaded, total)

    config, clustering = settings.worker, settings.clustering
    state = store.load(progress)
    engine = OnlineRankOrder.restore(store, config.dimension, clustering, state)
    covered = state.snapshot_count
    del state  # the engine holds what it needs; the rest is freed before the freeze
    gc.freeze()  # the restored engine is long-lived: full collections need not walk it
    metrics.RESTORE_SECONDS.observe(time.monotonic() - started)
    job = SnapshotJob(config.redis_address(), store.space, token, config.dimension)
    return engine, Compactor(job, clustering.rank_order.snapshot_every, covered=covered)
