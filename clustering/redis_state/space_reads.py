"""What the identity API and the console read of a space in Redis: identities by size or name, one identity,
the pictures of faces and the timelines. Reads only (no script, no lease), so any worker answers them, and
each is a page of an index the apply script keeps (clustering/redis_state/lua/apply_batch.lua), never a scan of
the space."""

from __future__ import annotations

from clustering.redis_state import redis_records as records
from clustering.redis_state.redis_client import RedisClient
from clustering.redis_state.redis_keys import Key, SpaceKeys
from clustering.redis_state.redis_records import Sighting
from clustering.store import ClusterSummary

#: Where an appearance's event id starts in its timeline member, 'RRRRRRRRRR:TTTTTTTTTTTTT:<event id>' (the apply
#: script's timeline_member writes them: a 10-digit root, a 13-digit inverted time).
_EVENT_ID_AT = 25


def timeline_range(root: int) -> tuple[str, str]:
    """The lexicographic range of the identity's members in the timeline (the apply script's timeline_range)."""
    return f"[{root:010d}:", f"({root:010d};"


class SpaceReads:
    def __init__(self, client: RedisClient, space: str) -> None:
        self.client = client
        self.keys = SpaceKeys(space)

    def largest_clusters(self, offset: int, limit: int) -> tuple[int, list[ClusterSummary]]:
        """How many clusters there are, and the summaries of ``limit`` of them from ``offset``, largest and then
        oldest first: read from the sizes index the apply script keeps, never the whole space."""
        total = int(self.client.zcard(self.keys.of(Key.SIZES)))
        found = self.client.zrevrange(self.keys.of(Key.SIZES), offset, offset + limit - 1) if limit > 0 else []
        roots = [root for root in found if isinstance(root, bytes | str)]
        raw = self.client.hmget(self.keys.of(Key.CLUSTERS), roots) if roots else []
        return total, [records.parse_summary(r) for r in raw if isinstance(r, bytes)]

    def named_clusters(self, part: str, offset: int, limit: int) -> tuple[int, list[ClusterSummary]]:
        """How many clusters have a name containing ``part`` (ignoring case), and ``limit`` of them from
        ``offset``, largest first: read from the names index the apply script keeps (named clusters only)."""
        wanted = part.casefold()
        roots = [
            root
            for root, name in self.client.hscan_iter(self.keys.of(Key.NAMES), count=5_000)
            if wanted in records.as_text(name).casefold()
        ]
        raw = self.client.hmget(self.keys.of(Key.CLUSTERS), roots) if roots else []
        found = sorted((records.parse_summary(r) for r in raw if isinstance(r, bytes)), key=lambda c: (-c.size, c.id))
        return len(found), found[offset : offset + limit]

    def thumbnail(self, face_id: str) -> bytes | None:
        """The picture of a face that is one of its cluster's representatives or the best face of an appearance
        its timeline keeps; None for any other face."""
        pipe = self.client.pipeline(transaction=False)  # both places in one round trip
        for key in (Key.THUMBNAILS, Key.APPEARANCE_PICTURES):
            pipe.hget(self.keys.of(key), face_id)
        return next((raw for raw in pipe.execute() if isinstance(raw, bytes)), None)

    def timeline(self, root: int, camera: str | None, offset: int, limit: int) -> tuple[int, list[Sighting]]:
        """How many appearances the identity of ``root`` keeps (of ``camera`` if given), and ``limit`` of them
        from ``offset``, newest first: read by its prefix in the timeline (its own members only, no scan)."""
        low, high = timeline_range(root)
        timeline = self.keys.of(Key.TIMELINE)
        if camera is None:
            total = int(self.client.zlexcount(timeline, low, high))
            members = self.client.zrangebylex(timeline, low, high, start=offset, num=limit) if limit else []
        else:  # an identity keeps a bounded few appearances: read them all, keep the camera's
            members = self.client.zrangebylex(timeline, low, high)
        ids = [records.as_text(member)[_EVENT_ID_AT:] for member in members]
        raw = self.client.hmget(self.keys.of(Key.APPEARANCES), ids) if ids else []
        found = [Sighting.from_json(r) for r in raw if isinstance(r, bytes)]
        if camera is not None:
            found = [sighting for sighting in found if sighting.camera == camera]
            total, found = len(found), found[offset : offset + limit]
        return total, found

    def cluster(self, cluster_id: int) -> ClusterSummary | None:
        """The summary of the cluster that ``cluster_id`` is in now (it may have been merged away since)."""
        parents_key, clusters_key = self.keys.of(Key.PARENTS), self.keys.of(Key.CLUSTERS)
        root = cluster_id
        for _ in range(10_000):  # union-find paths are short; a bound against a corrupt cycle
            parent = self.client.hget(parents_key, str(root))
            if parent is None:
                break
            root = int(parent)
        raw = self.client.hget(clusters_key, str(root))
        return None if not isinstance(raw, bytes) else records.parse_summary(raw)
