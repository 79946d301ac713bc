"""The Redis client of the clustering state: one server or a Redis Cluster, with retries, checked at start.

A space's keys share one hash tag (``{fs:<space>}``), so on a Redis Cluster each space lives in one slot of one
master, its Lua scripts and multi-key reads stay on that node, and spaces spread over the masters.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from clustering.store import StoreError
from streaming.redact import redact

RedisClient = redis.Redis | RedisCluster


def connect(
    url: str, retries: int = 3, timeout_s: float = 5.0, password: str | None = None, cluster: bool = False
) -> RedisClient:
    """A client with retries on connection errors, checked now: an unreachable Redis fails at start-up.
    ``password``: overrides the URL's (read from a secret file). ``cluster``: ``url`` names a node of a Redis
    Cluster, and the client follows the cluster's slots."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries),
    }
    if password is not None:
        options["password"] = password
    try:
        if cluster:
            client: RedisClient = RedisCluster.from_url(url, **options)
        else:
            client = redis.Redis.from_url(url, retry_on_error=[RedisConnectionError, RedisTimeoutError], **options)
        client.ping()
    except (AuthenticationError, ResponseError) as exc:
        if password is None and not urlsplit(url).password:
            # Redis's own words here are "NOAUTH ..." or "HELLO must be called ...", which name no password.
            raise StoreError(
                f"Redis at {redact(url)} asks for a password and none was given: put it in the URL "
                "(redis://:PASSWORD@host) or in a file named by FACESTREAM_WORKER__REDIS_PASSWORD_FILE"
            ) from exc
        if isinstance(exc, AuthenticationError) or "WRONGPASS" in str(exc):
            raise StoreError(
                f"Redis at {redact(url)} refused the password: check the URL's password or "
                "FACESTREAM_WORKER__REDIS_PASSWORD_FILE"
            ) from exc
        raise StoreError(f"Redis at {redact(url)} refused PING: {redact(str(exc))}") from exc
    except RedisError as exc:
        raise StoreError(f"Redis at {redact(url)} is unreachable: {redact(str(exc))}") from exc
    return client
