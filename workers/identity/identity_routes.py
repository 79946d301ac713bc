"""What each route of the identity API answers (workers/identity/identity_app.py routes requests to them): JSON,
or a face's picture; every refusal a RequestError with its status."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from clustering.redis_state.redis_records import Sighting
from clustering.store import ClusterSummary
from streaming.commands import Command, parse_command
from streaming.messages import MessageError
from streaming.pictures import media_type
from workers.identity.command_sender import CommandNotSentError
from workers.identity.identity_requests import (
    RequestError,
    identity_json,
    not_the_writer,
    query_number,
    request_embedding,
    request_image,
    sighting_json,
)
from workers.identity.openapi import MAX_K, MAX_NAME_QUERY

#: A query string's values, by name (the first of each is read).
Query = Mapping[str, list[str]]


class IdentityReader(Protocol):
    def identities(self, space: str, offset: int, limit: int) -> tuple[int, list[ClusterSummary]]:
        """How many identities the space has, and ``limit`` of them from ``offset``, largest first."""
        ...

    def named(self, space: str, part: str, offset: int, limit: int) -> tuple[int, list[ClusterSummary]]:
        """The identities whose name contains ``part`` (ignoring case), largest first, and how many there are."""
        ...

    def identity(self, space: str, cluster: int) -> ClusterSummary | None: ...

    def timeline(
        self, space: str, cluster: int, camera: str | None, offset: int, limit: int
    ) -> tuple[int, list[Sighting]]:
        """How many appearances the identity of root ``cluster`` keeps (of ``camera``), and a page of them."""
        ...

    def thumbnail(self, space: str, face_id: str) -> bytes | None:
        """The picture of a face its identity shows; None for any other."""
        ...

    def search(self, space: str, embedding: NDArray[np.float32], k: int) -> list[tuple[ClusterSummary, float]] | None:
        """None when this worker does not write ``space``."""
        ...

    def writes(self, space: str) -> bool:
        """Whether this worker writes ``space`` now (only its writer can search it)."""
        ...

    def face_embedding(self, image: NDArray[np.uint8]) -> NDArray[np.float32] | None:
        """The embedding of the largest face of ``image`` that passes the quality gate; None when none does."""
        ...


class CommandOutlet(Protocol):
    def send(self, command: Command) -> str:
        """Delivers a correction to the space's writer; returns the topic it went to."""
        ...


@dataclass(frozen=True)
class Reply:
    body: bytes
    content_type: str = "application/json"
    status: int = 200

    @classmethod
    def json(cls, data: dict[str, Any], status: int = 200) -> Reply:
        return cls(json.dumps(data).encode(), "application/json", status)


class Routes:
    """The routes' answers; the space each is given was checked by the application (identity_app)."""

    def __init__(self, reader: IdentityReader, commands: CommandOutlet, dimension: int) -> None:
        self.reader = reader
        self.commands = commands
        self.dimension = dimension
        self._image_slot = threading.Lock()

    def identities(self, space: str, query: Query) -> Reply:
        limit, offset = query_number(query, "limit", 100), query_number(query, "offset", 0)
        name = query.get("name", [""])[0].strip()
        if len(name) > MAX_NAME_QUERY:
            raise RequestError(400, f"name: at most {MAX_NAME_QUERY} characters")
        if name:
            total, page = self.reader.named(space, name, offset, limit)
        else:
            total, page = self.reader.identities(space, offset, limit)
        return Reply.json({"space": space, "total": total, "identities": [identity_json(s) for s in page]})

    def identity(self, space: str, raw_id: str) -> Reply:
        return Reply.json({"space": space, "identity": identity_json(self._summary(space, raw_id))})

    def _summary(self, space: str, raw_id: str) -> ClusterSummary:
        if not raw_id.isdigit():
            raise RequestError(400, "an identity id is a non-negative integer")
        summary = self.reader.identity(space, int(raw_id))
        if summary is None:
            raise RequestError(404, f"no identity {raw_id} in space {space}")
        return summary

    def appearances(self, space: str, raw_id: str, query: Query) -> Reply:
        root = self._summary(space, raw_id).id
        limit, offset = query_number(query, "limit", 20), query_number(query, "offset", 0)
        camera = query.get("camera", [""])[0] or None
        total, found = self.reader.timeline(space, root, camera, offset, limit)
        appearances = [sighting_json(s) for s in found]
        return Reply.json({"space": space, "identity": root, "total": total, "appearances": appearances})

    def thumbnail(self, space: str, face_id: str) -> Reply:
        picture = self.reader.thumbnail(space, face_id)
        kind = None if picture is None else media_type(picture)
        if picture is None or kind is None:
            raise RequestError(404, f"no picture of face {face_id[:200]} (only the faces an identity shows have one)")
        return Reply(picture, kind)

    def command(self, space: str, body: Any) -> Reply:
        if not isinstance(body, dict):
            raise RequestError(400, 'the body is a command: {"type": "merge", "clusters": [1, 2]}, ...')
        if body.get("space", space) != space:
            raise RequestError(400, f"the command names space {str(body['space'])[:100]!r}, the path {space!r}")
        data = {"command_id": f"api-{uuid.uuid4().hex}", **body, "space": space}
        try:
            command = parse_command(json.dumps(data))
        except MessageError as exc:
            raise RequestError(400, str(exc)) from exc
        try:
            topic = self.commands.send(command)
        except CommandNotSentError as exc:
            raise RequestError(503, str(exc)) from exc
        return Reply.json({"space": space, "command_id": command.command_id, "topic": topic}, status=202)

    def search(self, space: str, body: Any) -> Reply:
        if not isinstance(body, dict) or len({"embedding", "image"} & body.keys()) != 1:
            raise RequestError(400, 'the body is {"embedding": ..., "k": 5} or {"image": ..., "k": 5}')
        k = body.get("k", 5)
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise RequestError(400, f"k is an integer from 1 to {MAX_K}")
        if "image" in body:
            embedding = self._image_embedding(space, body["image"])
        else:
            embedding = request_embedding(body["embedding"], self.dimension)
        matches = self.reader.search(space, embedding, k)
        if matches is None:
            raise not_the_writer(space)
        found = [{"similarity": round(score, 6), "identity": identity_json(match)} for match, score in matches]
        return Reply.json({"space": space, "matches": found})

    def _image_embedding(self, space: str, image: object) -> NDArray[np.float32]:
        if not self.reader.writes(space):  # before any model is loaded or run for nothing
            raise not_the_writer(space)
        # One image at a time: each may take a few hundred MB to decode, inside the cluster worker.
        if not self._image_slot.acquire(blocking=False):
            raise RequestError(503, "another image search is running; try again in a moment")
        try:
            embedding = self.reader.face_embedding(request_image(image))
        finally:
            self._image_slot.release()
        if embedding is None:
            raise RequestError(422, "no face in the image passed the quality gate")
        return embedding
