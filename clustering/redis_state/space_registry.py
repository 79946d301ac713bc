"""Which identity spaces have had faces on which partition of the faces topic.

A cluster worker that is given a partition reads from the oldest position any of that partition's spaces
still needs: a space Redis lost (or all of Redis) is then rebuilt from the faces topic. A space is registered
before its first face is applied, so a space absent from here has nothing applied, or went idle: a writer
releasing an idle space records first that its partition was read through the committed offset, so what it
holds needs no read again (a space Redis loses after that is not rebuilt from the topic). The registry is one set
per partition, outside the spaces' own hash slots (it is never written together with a space's state).
"""

from __future__ import annotations

from clustering.redis_state.redis_client import RedisClient


class SpaceRegistry:
    def __init__(self, client: RedisClient, topic: str) -> None:
        self.client = client
        self.topic = topic

    def _key(self, partition: int) -> str:
        return f"fs-registry:{self.topic}:{partition}"

    def add(self, partition: int, space: str) -> None:
        self.client.sadd(self._key(partition), space)

    def remove(self, partition: int, space: str) -> None:
        self.client.srem(self._key(partition), space)

    def spaces(self, partition: int) -> set[str]:
        return {
            raw.decode() if isinstance(raw, bytes) else str(raw) for raw in self.client.smembers(self._key(partition))
        }
