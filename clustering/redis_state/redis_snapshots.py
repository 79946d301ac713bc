"""An identity space's index snapshot in Redis: written in parts under a fresh generation, switched in one step.

Keys, under the space's hash tag: ``snapshot`` (a hash: generation, parts, count) names the current snapshot,
whose parts are ``snapshot:<generation>:<n>``. A writer stores every part of a new generation first; one
script then makes it current, only while the writer's lease is the caller's and no newer snapshot is, and the
replaced generation is unlinked after it. A reader sees the old snapshot or the new one, never a mix.
"""

from __future__ import annotations

import secrets

from redis.exceptions import ResponseError

from clustering.redis_state.lua_scripts import lua
from clustering.redis_state.redis_client import RedisClient
from clustering.redis_state.redis_records import as_text
from clustering.store import StoreError

#: One Redis string holds at most 512 MB, and Redis serves one command at a time: small parts keep the
#: writer's own calls from waiting long behind a snapshot being written or read.
SNAPSHOT_PART_BYTES = 8 << 20
#: Parts read per round trip when restoring.
_PARTS_PER_READ = 8


class SnapshotParts:
    def __init__(self, client: RedisClient, key: str, writer_key: str, space: str) -> None:
        self.client = client
        self.key = key
        self.writer_key = writer_key
        self.space = space
        self._switch = client.register_script(lua("switch_snapshot.lua"))

    def save(self, data: bytes, count: int, writer_token: str) -> None:
        """Stores ``data`` as the snapshot of the first ``count`` faces, if ``writer_token`` holds the lease."""
        generation = secrets.token_hex(4)
        # Read at call time, so that tests can make parts small.
        size = SNAPSHOT_PART_BYTES
        parts = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        for number, part in enumerate(parts):
            self.client.set(self._part_key(generation, number), part)
        try:
            old, old_parts = self._switch(
                keys=[self.key, self.writer_key], args=[generation, len(parts), count, writer_token]
            )
        except ResponseError as exc:
            self._delete(generation, len(parts))
            raise StoreError(f"Redis refused the index snapshot of {count} faces: {exc}") from exc
        if as_text(old):
            self._delete(as_text(old), int(old_parts))

    def load(self) -> tuple[bytes | None, int]:
        """The current snapshot and the number of faces it covers; (None, 0) when there is none."""
        generation, parts, count = self.client.hmget(self.key, "generation", "parts", "count")
        if generation is None or parts is None:
            return None, 0
        keys = [self._part_key(as_text(generation), n) for n in range(int(parts))]
        chunks = [
            piece
            for first in range(0, len(keys), _PARTS_PER_READ)
            for piece in self.client.mget(keys[first : first + _PARTS_PER_READ])
            if isinstance(piece, bytes)
        ]
        if len(chunks) != int(parts):
            raise StoreError(f"identity space {self.space}: a part of the index snapshot is missing")
        return b"".join(chunks), int(count or 0)

    def clear(self) -> None:
        generation, parts = self.client.hmget(self.key, "generation", "parts")
        if generation is not None:
            self._delete(as_text(generation), int(parts or 0))
        self.client.delete(self.key)

    def _part_key(self, generation: str, number: int) -> str:
        return f"{self.key}:{generation}:{number}"

    def _delete(self, generation: str, parts: int) -> None:
        if parts:
            self.client.unlink(*(self._part_key(generation, n) for n in range(parts)))  # freed in the background
