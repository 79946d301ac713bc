"""The writer lease of an identity space, and the thread that keeps it while the writer is alive.

The lease is renewed by its own thread, not between batches, so that a long batch or a slow Redis round trip
never costs the writer its lease. A writer that is truly stuck is still fenced: the keeper renews only while
the writer's loop reported progress within ``stall_s``; past that it lets the lease lapse, a standby takes
over, and the apply script refuses whatever the stuck writer tries to write afterwards.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

from redis.exceptions import RedisError

from clustering.redis_state.lua_scripts import lua
from clustering.redis_state.redis_client import RedisClient
from clustering.redis_state.redis_keys import Key, SpaceKeys

log = logging.getLogger(__name__)


class WriterLease:
    """One active writer per identity space: a Redis key holding the writer's token, with a time to live.

    The holder renews it well before it expires; a standby takes it once it lapses. The apply script checks
    the token, so a writer that stalled past its lease cannot write after a standby took over.
    """

    def __init__(self, client: RedisClient, space: str, ttl_s: float) -> None:
        self.client = client
        self.space = space
        self.key = SpaceKeys(space).of(Key.WRITER)
        self.token = secrets.token_hex(16)
        self.ttl_ms = max(int(ttl_s * 1000), 100)
        self._renew = client.register_script(lua("renew_lease.lua"))
        self._release = client.register_script(lua("release_lease.lua"))

    def acquire(self) -> bool:
        """True when this worker holds the lease (now or already)."""
        if self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            return True
        return self.renew()

    def renew(self) -> bool:
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.token])

    def holder(self) -> str | None:
        raw = self.client.get(self.key)
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)


class LeaseKeeper:
    """Renews a held lease every third of its time to live, from its own thread, while the writer progresses."""

    def __init__(self, lease: WriterLease, stall_s: float) -> None:
        self.lease = lease
        self.stall_s = stall_s
        self._progress = time.monotonic()
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts keeping the lease (just acquired by the caller)."""
        self.stop()
        self._lost, self._progress = None, time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)
        self._thread.start()

    def progressed(self) -> None:
        """The writer's loop went round: it is alive."""
        self._progress = time.monotonic()

    @property
    def lost(self) -> str | None:
        """Why the lease is no longer held for sure; None while it is."""
        return self._lost

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _keep(self) -> None:
        interval = self.lease.ttl_ms / 3000
        expires = time.monotonic() + self.lease.ttl_ms / 1000
        while not self._stop.wait(interval):
            stalled = time.monotonic() - self._progress
            if stalled > self.stall_s:
                self._lost = f"the writer made no progress for {stalled:.0f} s; its lease is left to lapse"
                log.error("%s (a standby takes over)", self._lost)
                return
            try:
                renewed = self.lease.renew()
            except RedisError as exc:
                if time.monotonic() >= expires:
                    self._lost = f"the writer lease lapsed while Redis was unreachable ({exc})"
                    return
                log.warning("could not renew the writer lease (%s); trying again in %.1f s", exc, interval)
                continue
            if not renewed:
                self._lost = "the writer lease lapsed and another worker took it"
                return
            expires = time.monotonic() + self.lease.ttl_ms / 1000
