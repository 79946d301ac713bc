"""The Redis client of the clustering state: one server or a Redis Cluster, with retries, checked at start.

A space's keys share one hash tag (``{fs:<space>}``), so on a Redis Cluster each space lives in one slot of one
master, its Lua scripts and multi-key reads stay on that node, and spaces spread over the masters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from clustering.store import StoreError

RedisClient = redis.Redis | RedisCluster


@dataclass(frozen=True)
class RedisAddress:
    """Where the clustering state is and how to reach it (a process's snapshot child connects the same way)."""

    url: str
    #: Overrides the URL's password (read from a secret file).
    password: str | None = None
    #: ``url`` names a node of a Redis Cluster, and the client follows the cluster's slots.
    cluster: bool = False
    #: CA certificate(s) that sign a ``rediss://`` server's certificate; None: the system's.
    ca_file: str | None = None


#: A key of the state's namespace that no identity space uses (a space name is never empty).
_PROBE_KEY = "{fs:}:permissions"
_PROBE = """
redis.call('HSET', KEYS[1], 'probe', '1')
redis.call('HGET', KEYS[1], 'probe')
redis.call('RPUSH', KEYS[2], 'probe')
redis.call('LTRIM', KEYS[2], 1, 0)
redis.call('ZADD', KEYS[3], 1, 'probe')
redis.call('ZREVRANGE', KEYS[3], 0, 0)
redis.call('ZCARD', KEYS[3])
redis.call('ZRANGEBYLEX', KEYS[3], '-', '+')
redis.call('ZLEXCOUNT', KEYS[3], '-', '+')
redis.call('ZREM', KEYS[3], 'probe')
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3])
return 1
"""


def hidden(text: str, url: str, password: str | None = None) -> str:
    """``text`` (a URL, an error message) without the secrets of this address: its URL's password and the
    one given apart from it, each replaced by ***. Every message of this module shows a URL through it."""
    in_url = urlsplit(url).password
    secrets = {secret for secret in (password, in_url, unquote(in_url) if in_url else None) if secret}
    for secret in sorted(secrets, key=len, reverse=True):  # a longer secret may hold a shorter one
        text = text.replace(secret, "***")
    return text


def connect(address: str | RedisAddress, retries: int = 3, timeout_s: float = 5.0) -> RedisClient:
    """A client with retries on connection errors, checked now: an unreachable Redis fails at start-up.
    ``address``: a whole address, or just a URL (``redis://``, ``rediss://`` for TLS)."""
    if isinstance(address, str):
        address = RedisAddress(address)
    url, password = address.url, address.password
    shown = hidden(url, url)
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries),
    }
    if password is not None:
        options["password"] = password
    if address.ca_file is not None:
        options["ssl_ca_certs"] = address.ca_file
    try:
        if address.cluster:
            client: RedisClient = RedisCluster.from_url(url, **options)
        else:
            client = redis.Redis.from_url(url, retry_on_error=[RedisConnectionError, RedisTimeoutError], **options)
        client.ping()
    except (AuthenticationError, ResponseError) as exc:
        if password is None and not urlsplit(url).password:
            # Redis's own words here are "NOAUTH ..." or "HELLO must be called ...", which name no password.
            raise StoreError(
                f"Redis at {shown} asks for a password and none was given: put it in the URL "
                "(redis://:PASSWORD@host) or in a file named by FACESTREAM_WORKER__REDIS_PASSWORD_FILE"
            ) from exc
        if isinstance(exc, AuthenticationError) or "WRONGPASS" in str(exc):
            raise StoreError(
                f"Redis at {shown} refused the password: check the URL's password or "
                "FACESTREAM_WORKER__REDIS_PASSWORD_FILE"
            ) from exc
        raise StoreError(f"Redis at {shown} refused PING: {hidden(str(exc), url, password)}") from exc
    except RedisError as exc:
        raise StoreError(f"Redis at {shown} is unreachable: {hidden(str(exc), url, password)}") from exc
    return client


def check_permissions(client: RedisClient, url: str) -> None:
    """Runs the kinds of command the cluster stage needs, in its key namespace, so that a Redis user with too few
    rights is named at start rather than at the first face."""
    try:
        keys = [_PROBE_KEY, _PROBE_KEY + ":list", _PROBE_KEY + ":sorted"]
        client.register_script(_PROBE)(keys=keys)  # EVALSHA, SCRIPT LOAD as applying
        client.smembers("fs-registry:permissions")
        client.srem("fs-registry:permissions", "probe")  # an idle space leaves its partition's registry
    except NoPermissionError as exc:
        raise StoreError(
            f"the Redis user of {hidden(url, url)} may not do what the cluster stage needs "
            f"({hidden(str(exc), url)}): it "
            "needs the keys '{fs:*' and 'fs-registry:*' and the commands listed in docs/operations.md (Security)"
        ) from exc
