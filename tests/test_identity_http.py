"""The identity API's HTTP side over real sockets, with an empty data side: which routes answer without the
token, what a path's space and face id arrive as, what every other method and a malformed body get, and the
headers that keep the console's page and the data out of caches and frames."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message

import numpy as np
import pytest
from numpy.typing import NDArray

from clustering.redis_state.redis_records import Sighting
from clustering.store import ClusterSummary
from streaming.commands import Command
from tests.local_services import read_until_closed
from workers.identity.command_sender import CommandNotSentError
from workers.identity.identity_api import IdentityApi
from workers.identity.identity_app import MAX_BODY_BYTES

TOKEN = "http-token"


class _NoIdentities:
    """The API's data side, empty: these tests are about its HTTP side."""

    def identities(self, space: str, offset: int, limit: int) -> tuple[int, list[ClusterSummary]]:
        return 0, []

    def named(self, space: str, part: str, offset: int, limit: int) -> tuple[int, list[ClusterSummary]]:
        return 0, []

    def identity(self, space: str, cluster: int) -> ClusterSummary | None:
        return None

    def thumbnail(self, space: str, face_id: str) -> bytes | None:
        return None

    def timeline(
        self, space: str, cluster: int, camera: str | None, offset: int, limit: int
    ) -> tuple[int, list[Sighting]]:
        return 0, []

    def search(self, space: str, embedding: NDArray[np.float32], k: int) -> list[tuple[ClusterSummary, float]] | None:
        return []

    def writes(self, space: str) -> bool:
        return True

    def face_embedding(self, image: NDArray[np.uint8]) -> NDArray[np.float32] | None:
        return None

    def send(self, command: Command) -> str:
        raise CommandNotSentError("these tests send no command")


@pytest.fixture
def api_port() -> Iterator[int]:
    api = IdentityApi(_NoIdentities(), _NoIdentities(), "127.0.0.1", 0, token=TOKEN, dimension=4).start()
    try:
        yield api.port
    finally:
        api.stop()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _request(
    port: int, path: str, method: str = "GET", *, token: str | None = TOKEN, body: bytes | None = None
) -> tuple[int, Message, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, headers, method=method)
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status), response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_only_the_console_and_the_description_answer_without_the_token(api_port: int) -> None:
    status, headers, page = _request(api_port, "/console/", token=None)
    assert status == 200
    assert b"<html" in page.lower()
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert _request(api_port, "/console", token=None)[1]["Location"].endswith("/console/")
    assert _request(api_port, "/", token=None)[:2][0] == 308
    assert _request(api_port, "/console/nothing.js", token=None)[0] == 404
    status, _, description = _request(api_port, "/v1/openapi.json", token=None)
    assert status == 200
    assert json.loads(description)["openapi"].startswith("3.1")
    for path in ("/v1/spaces/s/identities", "/v1/spaces/s/identities/1", "/nowhere", "/v1/spaces/s/search"):
        status, headers, refusal = _request(api_port, path, token=None)
        assert (status, headers["WWW-Authenticate"]) == (401, "Bearer"), path
        assert json.loads(refusal) == {"error": "a valid bearer token is required"}
    assert _request(api_port, "/v1/spaces/s/identities", token="other")[0] == 401


def test_a_space_or_face_id_with_any_character_arrives_as_it_was_named(api_port: int) -> None:
    status, headers, answer = _request(api_port, "/v1/spaces/lobby%2Fnorth%20%25/identities")
    assert status == 400  # a space holds no white space: refused by the contract's pattern, not the router
    status, headers, answer = _request(api_port, "/v1/spaces/lobby%2Fnorth%25/identities?limit=5")
    assert (status, json.loads(answer)) == (200, {"space": "lobby/north%", "total": 0, "identities": []})
    assert headers["Cache-Control"] == "no-store"
    status, _, answer = _request(api_port, "/v1/spaces/a%2Fb/faces/gate%2F2:812:0/thumbnail")
    assert status == 404
    assert "gate/2:812:0" in json.loads(answer)["error"]
    status, _, answer = _request(api_port, "/v1/spaces/a/identities/7/appearances")
    assert status == 404
    assert json.loads(answer)["error"] == "no identity 7 in space a"
    assert _request(api_port, "/v1/spaces/a/identities/seven")[0] == 400


def test_other_methods_and_malformed_bodies_are_the_clients_mistakes(api_port: int) -> None:
    for method in ("PUT", "DELETE", "OPTIONS", "PATCH"):
        status, headers, answer = _request(api_port, "/v1/spaces/s/identities", method)
        assert status == 405, method
        assert "GET" in headers["Allow"]
        assert "error" in json.loads(answer)
    status, headers, _ = _request(api_port, "/v1/spaces/s/search", "GET")
    assert (status, headers["Allow"]) == (405, "POST")
    status, _, answer = _request(api_port, "/v1/spaces/s/search", "POST", body=b"{not json")
    assert status == 400
    assert json.loads(answer)["error"].startswith("the body is not JSON")
    status, _, answer = _request(api_port, "/v1/spaces/s/commands", "POST", body=b'{"type": "merge"}')
    assert status == 400
    assert json.loads(answer)["error"].startswith("malformed: merge command")
    status, _, answer = _request(api_port, "/v1/spaces/s/identities/1/more")
    assert status == 404
    assert "/v1/spaces/<space>/identities" in json.loads(answer)["error"]


def _post(port: int, length: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (
            f"POST /v1/spaces/s/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        answer = read_until_closed(sock)
    return int(answer.split(b" ", 2)[1]), answer.split(b"\r\n\r\n", 1)[1]


def test_a_content_length_that_is_not_a_count_of_bytes_is_refused_without_reading_the_body(api_port: int) -> None:
    for length in ("-1", "+5", "abc", "1e3", "١٢"):
        assert _post(api_port, length, b'{"embedding": [1, 0, 0, 0]}')[0] == 400, length
    assert _post(api_port, str(MAX_BODY_BYTES + 1))[0] == 413
    body = b'{"embedding": [1, 0, 0, 0], "k": 1}'
    status, answer = _post(api_port, str(len(body)), body)
    assert (status, json.loads(answer)) == (200, {"space": "s", "matches": []})
