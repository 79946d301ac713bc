"""The identity API's OpenAPI description: every route with its parameters, bodies and answers, built from the
pydantic models below (what the routes answer) and the contracts' own schemas for commands (docs/messages.md).
Served without a token at ``/v1/openapi.json`` (it holds no data); tests/test_api_properties.py checks the API
against it with schemathesis."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field
from pydantic.json_schema import models_json_schema

from streaming.frozen import FrozenModel
from streaming.messages import SPACE_PATTERN
from streaming.schemas import json_schemas

MAX_K = 100
MAX_NAME_QUERY = 200
#: The largest limit or offset a page may name.
MAX_PAGE_NUMBER = 100_000
#: A camera id's length, as the contracts bound it (streaming/messages.py, CameraId).
MAX_CAMERA_ID = 200


class Identity(FrozenModel):
    id: int = Field(ge=0, description="The identity's cluster id (an id merged away since names its cluster now)")
    name: str | None = Field(description="Given by a label correction; null when unnamed")
    size: int = Field(ge=1, description="Faces in it")
    first_seen: float
    last_seen: float
    cameras: list[str]
    representatives: list[str] = Field(description="Face ids of the faces it shows, best first (each has a picture)")


class IdentityPage(FrozenModel):
    space: str
    total: int = Field(ge=0, description="Identities in the space (or named like the query)")
    identities: list[Identity]


class OneIdentity(FrozenModel):
    space: str
    identity: Identity


class EmbeddingSearch(FrozenModel):
    embedding: list[float] | str = Field(description="The embedder's floats, or base64 of little-endian float32")
    k: int = Field(5, ge=1, le=MAX_K)


class ImageSearch(FrozenModel):
    image: str = Field(description="Base64 of a photo (JPEG, PNG, WebP, ...): its largest face that passes the gate")
    k: int = Field(5, ge=1, le=MAX_K)


class Match(FrozenModel):
    similarity: float
    identity: Identity


class SearchAnswer(FrozenModel):
    space: str
    matches: list[Match]


class CommandAccepted(FrozenModel):
    space: str
    command_id: str
    topic: str = Field(description="Where it was delivered: the writer applies it from there, in order")


class Appearance(FrozenModel):
    track: str
    sequence: int = Field(ge=0, description="0 for a track's first appearance; long tracks report periodically")
    camera: str
    first_seen: float
    last_seen: float
    faces: int = Field(ge=0)
    ended: bool = Field(description="False for a periodic report of a track still going")
    best_face: str = Field(description="Its best embedded face: its picture, when kept, is at .../faces/<id>/thumbnail")


class Timeline(FrozenModel):
    space: str
    identity: int = Field(description="The identity's id now (an id merged away since gives the one it is part of)")
    total: int = Field(ge=0, description="Appearances the identity keeps (of the camera, when one is asked for)")
    appearances: list[Appearance]


class ErrorAnswer(FrozenModel):
    error: str


_MODELS: tuple[type[FrozenModel], ...] = (
    Identity, IdentityPage, OneIdentity, EmbeddingSearch, ImageSearch, Match, SearchAnswer, CommandAccepted,
    Appearance, Timeline, ErrorAnswer,
)  # fmt: skip
_COMMANDS = ("merge", "split", "reject", "label", "forget")
_PICTURES = ("image/webp", "image/jpeg", "image/png")
_JSON = ("application/json",)
_REFUSALS = {
    400: "the request is not what the route takes (the message says what)",
    401: "no valid bearer token",
    404: "no such identity or picture",
    405: "not a method of this route",
    409: "this worker does not write the space: search on its writer",
    413: "the body is too large (refused by the server before it is read: plain text)",
    422: "no face in the photo passed the quality gate",
    503: "busy (another image search), or the broker did not take the command",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any], kinds: tuple[str, ...] = _JSON) -> dict[str, Any]:
    return {"content": {kind: {"schema": schema} for kind in kinds}}


def _answers(ok: int, schema: dict[str, Any], *errors: int, kinds: tuple[str, ...] = _JSON) -> dict[str, Any]:
    answers: dict[str, Any] = {str(ok): {"description": "done", **_content(schema, kinds)}}
    for status in (400, 401, 405, *errors):
        refusal = _content({"type": "string"}, ("text/plain",)) if status == 413 else _content(_ref("ErrorAnswer"))
        answers[str(status)] = {"description": _REFUSALS[status], **refusal}
    return answers


def _command_schema(kind: str) -> dict[str, Any]:
    """A command as the API takes it: the contract's, its id and space optional (the API gives them)."""
    schema = copy.deepcopy(json_schemas()[f"command-{kind}.v1"])
    schema.pop("$id", None)
    schema["required"] = ["type", *(f for f in schema.get("required", []) if f not in ("command_id", "space"))]
    return schema


def openapi_document(dimension: int) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the identity API, for embeddings of ``dimension`` floats."""
    _, defs = models_json_schema([(m, "serialization") for m in _MODELS], ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = defs["$defs"]
    embedding = schemas["EmbeddingSearch"]["properties"]["embedding"]
    embedding["anyOf"][0] |= {"minItems": dimension, "maxItems": dimension}
    for kind in _COMMANDS:
        schemas[f"{kind.capitalize()}Command"] = _command_schema(kind)
    space = {"name": "space", "in": "path", "required": True, "schema": {"type": "string", "pattern": SPACE_PATTERN}}
    number = {"type": "integer", "minimum": 0, "maximum": MAX_PAGE_NUMBER}
    page_parameters = [
        {"name": "limit", "in": "query", "schema": number | {"default": 100}},
        {"name": "offset", "in": "query", "schema": number | {"default": 0}},
        {"name": "name", "in": "query", "schema": {"type": "string", "maxLength": MAX_NAME_QUERY}},
    ]
    timeline_parameters = [
        {"name": "camera", "in": "query", "schema": {"type": "string", "maxLength": MAX_CAMERA_ID}},
        {"name": "limit", "in": "query", "schema": number | {"default": 20}},
        {"name": "offset", "in": "query", "schema": number | {"default": 0}},
    ]
    identity_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
    face_id = {"name": "face", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
    commands = {"oneOf": [_ref(f"{kind.capitalize()}Command") for kind in _COMMANDS]}
    searches = {"oneOf": [_ref("EmbeddingSearch"), _ref("ImageSearch")]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "facestream identity API", "version": "1"},
        "components": {"schemas": schemas, "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
        "security": [{"token": []}],
        "paths": {
            "/v1/spaces/{space}/identities": {"get": {
                "summary": "Identities, largest first; with name: those whose name contains it (any case)",
                "parameters": [space, *page_parameters],
                "responses": _answers(200, _ref("IdentityPage")),
            }},
            "/v1/spaces/{space}/identities/{id}": {"get": {
                "summary": "One identity (an id merged away since gives the identity it is part of now)",
                "parameters": [space, identity_id],
                "responses": _answers(200, _ref("OneIdentity"), 404),
            }},
            "/v1/spaces/{space}/identities/{id}/appearances": {"get": {
                "summary": "Where and when the identity was seen: its appearances, newest first",
                "parameters": [space, identity_id, *timeline_parameters],
                "responses": _answers(200, _ref("Timeline"), 404),
            }},
            "/v1/spaces/{space}/faces/{face}/thumbnail": {"get": {
                "summary": "The picture of a face its identity shows (WebP, JPEG or PNG)",
                "parameters": [space, face_id],
                "responses": _answers(200, {"type": "string", "format": "binary"}, 404, kinds=_PICTURES),
            }},
            "/v1/spaces/{space}/search": {"post": {
                "summary": "The identities nearest an embedding, or the largest accepted face of a photo",
                "parameters": [space],
                "requestBody": {"required": True, **_content(searches)},
                "responses": _answers(200, _ref("SearchAnswer"), 409, 413, 422, 503),
            }},
            "/v1/spaces/{space}/commands": {"post": {
                "summary": "A correction, sent to the space's writer through the commands topic",
                "parameters": [space],
                "requestBody": {"required": True, **_content(commands)},
                "responses": _answers(202, _ref("CommandAccepted"), 413, 503),
            }},
        },
    }  # fmt: skip
