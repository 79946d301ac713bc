"""A redis-server that speaks only TLS and knows ACL users, with certificates made at test time by openssl."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.local_services import free_port
from tests.services import missing

#: What the cluster stage runs (docs/operations.md, Security), on the keys it uses.
CLUSTER_STAGE_RIGHTS = (
    "~{fs:* ~fs-registry:* resetchannels -@all +ping +select +get +mget +set +del +unlink "
    "+pexpire +hset +hget +hmget +hgetall +hscan +hlen +hexists +hdel +lrange +ltrim +rpush +sadd +srem +smembers "
    "+zadd +zrem +zcard +zrevrange +zrangebylex +zlexcount "
    "+evalsha +script|load"
)
#: A user that may only read the state: too few rights for the cluster stage.
READ_ONLY_RIGHTS = "~{fs:* ~fs-registry:* resetchannels -@all +ping +@read"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate authority: (certificate, key)."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
        "-subj", f"/CN={name}",
    )  # fmt: skip
    return cert, key


def _server_certificate(folder: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by ``ca``: (certificate, key)."""
    cert, key, request, extensions = (folder / name for name in ("server.crt", "server.key", "server.csr", "ext"))
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request), "-subj", "/CN=redis")
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(extensions),
    )  # fmt: skip
    return cert, key


class TlsRedis:
    """The server's TLS port, its CA certificate, and the password of each ACL user."""

    def __init__(self, port: int, ca_file: Path, passwords: dict[str, str]) -> None:
        self.port = port
        self.ca_file = ca_file
        self.passwords = passwords

    def url(self, user: str) -> str:
        return f"rediss://{user}@127.0.0.1:{self.port}/0"


@contextmanager
def tls_redis(folder: Path, users: dict[str, str]) -> Iterator[TlsRedis]:
    """A TLS-only redis-server with ``users`` (name -> ACL rules), each with a password of its own."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server (Debian package redis-server)")
    if shutil.which("openssl") is None:
        missing("openssl (Debian package openssl)")
    assert binary is not None
    ca = make_ca(folder, "test-ca")
    cert, key = _server_certificate(folder, ca)
    passwords = {name: f"{name}-secret-{free_port()}" for name in [*users, "admin"]}
    acl = ["user default off", f"user admin on >{passwords['admin']} ~* &* +@all"]
    acl += [f"user {name} on >{passwords[name]} {rules}" for name, rules in users.items()]
    (folder / "users.acl").write_text("\n".join(acl) + "\n")
    port = free_port()
    process = subprocess.Popen(
        [
            binary, "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca[0]), "--tls-auth-clients", "no",
            "--aclfile", str(folder / "users.acl"), "--save", "", "--dir", str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    admin = redis.Redis(
        host="127.0.0.1",
        port=port,
        username="admin",
        password=passwords["admin"],
        ssl=True,
        ssl_ca_certs=str(ca[0]),
        socket_connect_timeout=0.5,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                admin.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start with TLS on port {port}") from None
                time.sleep(0.05)
        yield TlsRedis(port, ca[0], passwords)
    finally:
        process.terminate()
        process.wait(timeout=10)
