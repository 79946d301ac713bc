"""The identity API against its own OpenAPI description, with requests generated from it (schemathesis, on
hypothesis): whatever a client sends that the description allows, the API answers with a status it documents,
the media type it documents and a body that fits the documented schema, and never a server error. Run against a
space in the real Redis with identities, names and pictures, and the real broker for the commands."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clustering.corrections import LabelCluster
from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_records import OutboxEntry, Sighting
from clustering.redis_state.redis_store import RedisStore
from models.analyzer import FaceAnalyzer
from tests.local_services import fresh_kafka
from tests.synthetic_faces import DIM, identities
from tests.synthetic_faces import settings as clustering_settings
from workers.identity.command_sender import CommandSender
from workers.identity.identity_api import IdentityApi, WorkerIdentities
from workers.identity.openapi import openapi_document

TOKEN = "props-" + uuid.uuid4().hex
SPACE = "props" + uuid.uuid4().hex[:8]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_dict(openapi_document(DIM))


def _picture(seed: int) -> bytes:
    face = np.random.default_rng(seed).integers(0, 255, size=(112, 112, 3), dtype=np.uint8)
    return bytes(cv2.imencode(".webp", face, [cv2.IMWRITE_WEBP_QUALITY, 60])[1].tobytes())


def _picture_of(seed: int) -> Callable[[], bytes]:
    picture = _picture(seed)
    return lambda: picture


@pytest.fixture(scope="module")
def api_url(redis_url: str, kafka_bootstrap: str, analyzer: FaceAnalyzer) -> Iterator[str]:
    store = RedisStore(connect(redis_url), SPACE)
    engine = OnlineRankOrder(DIM, clustering_settings(), store)
    vectors, _ = identities(8, 4, 0.3, seed=11)
    for number, vector in enumerate(vectors):
        engine.add(f"cam:{number}:0", vector, camera="cam", frame=number, thumbnail=_picture_of(number))
    for number in range(0, len(vectors), 3):  # appearances of some of them, for the timelines
        face = f"cam:{number}:0"
        entry = OutboxEntry(0, number, face, engine.cluster_of(face), (), "cam", float(number), appearance="{}")
        store.apply_event(f"t{number}#0", entry, Sighting(f"t{number}", 0, "cam", 0.0, float(number), 5, True, face))
    engine.correct(LabelCluster("name-1", engine.cluster_of("cam:0:0"), "Ada"))
    reader = WorkerIdentities(
        connect(redis_url), lambda space: engine if space == SPACE else None, threading.Lock(), lambda: analyzer
    )
    commands = CommandSender(fresh_kafka(kafka_bootstrap))
    api = IdentityApi(reader, commands, "127.0.0.1", 0, token=TOKEN, dimension=DIM).start()
    try:
        yield f"http://127.0.0.1:{api.port}"
    finally:
        api.stop()
        store.clear()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_answers_as_its_description_says(case: schemathesis.Case[Any], api_url: str) -> None:
    # Most requests go to the space with data; the others to whatever space was generated (empty ones).
    if case.path_parameters and not case.path_parameters["space"].startswith("x"):
        case.path_parameters["space"] = SPACE
    case.call_and_validate(base_url=api_url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)


def test_the_description_is_served_without_a_token(api_url: str) -> None:
    import json  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(f"{api_url}/v1/openapi.json", timeout=10) as response:
        assert json.loads(response.read()) == openapi_document(DIM)
