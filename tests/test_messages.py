"""Message contracts: both ways, against their JSON Schemas, and every malformed shape with its reason."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from streaming.commands import (
    parse_command,
)
from streaming.messages import (
    FaceRecord,
    MessageError,
    TrackRecord,
    parse_faces_topic,
)
from streaming.schemas import SCHEMAS, json_schemas
from tests.message_examples import EXAMPLES, example_face
from workers.cluster.command_corrections import correction_of

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"


def test_a_version_1_face_record_is_still_read() -> None:
    record = json.loads(example_face().to_json())
    del record["type"], record["track"], record["cooccurring"]
    record["version"] = 1
    parsed = parse_faces_topic(json.dumps(record).encode())
    assert isinstance(parsed, FaceRecord)
    assert parsed.track is None
    assert parsed.vector().shape == (512,)


def test_the_faces_topic_carries_faces_and_tracks() -> None:
    assert isinstance(parse_faces_topic(EXAMPLES["track.v2"].to_json()), TrackRecord)
    assert isinstance(parse_faces_topic(EXAMPLES["face.v2"].to_json()), FaceRecord)
    untracked = example_face(embedding=None, track="lobby:t40.0")
    assert isinstance(parse_faces_topic(untracked.to_json()), FaceRecord)
    with pytest.raises(MessageError) as caught:
        parse_faces_topic(b'{"type": "gossip"}')
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize("stem", sorted(SCHEMAS))
def test_each_contract_round_trips_and_matches_its_schema_file(stem: str) -> None:
    message = EXAMPLES[stem]
    model = SCHEMAS[stem]
    assert model.from_json(message.to_json()) == message
    schema = json.loads((SCHEMA_DIR / f"{stem}.json").read_text())
    assert schema == json_schemas()[stem], f"docs/schemas/{stem}.json is stale: regenerate it (docs/messages.md)"
    jsonschema.validate(json.loads(message.to_json()), schema)


def test_embedding_round_trips_bit_for_bit() -> None:
    vector = np.linspace(-1, 1, 512, dtype=np.float32)
    vector /= np.linalg.norm(vector)
    face = example_face(embedding=FaceRecord.encode_embedding(vector))
    np.testing.assert_array_equal(FaceRecord.from_json(face.to_json()).vector(512), vector)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (b"not json", "malformed"),
        (b'{"version": 1}', "malformed"),
        (example_face().to_json().replace(b'"version":2', b'"version":3'), "unknown_version"),
        (example_face().to_json().replace(b'"score":0.87', b'"score":0.87,"extra":1'), "malformed"),
    ],
    ids=["empty", "not-json", "missing-fields", "version-3", "unknown-field"],
)
def test_bad_face_records_name_their_reason(value: bytes, reason: str) -> None:
    with pytest.raises(MessageError) as caught:
        FaceRecord.from_json(value)
    assert caught.value.reason == reason


def test_wrong_embeddings_are_refused() -> None:
    short = example_face(embedding=FaceRecord.encode_embedding(np.ones(128, np.float32)))
    with pytest.raises(MessageError, match="expects 512") as caught:
        short.vector(512)
    assert caught.value.reason == "bad_embedding"
    with pytest.raises(MessageError, match="expects 256"):
        example_face().vector(256)  # a record from another model than the cluster worker's
    with pytest.raises(MessageError, match="not base64"):
        example_face(embedding="***").vector()
    with pytest.raises(MessageError, match="NaN"):
        example_face(embedding=FaceRecord.encode_embedding(np.full(512, np.nan, np.float32))).vector()
    with pytest.raises(MessageError, match="all zeros"):
        example_face(embedding=FaceRecord.encode_embedding(np.zeros(512, np.float32))).vector()


def test_an_embedding_of_another_length_is_taken_at_unit_length() -> None:
    direction = np.random.default_rng(3).normal(size=512).astype(np.float32)
    direction /= np.linalg.norm(direction)
    scaled = example_face(embedding=FaceRecord.encode_embedding(direction * 100)).vector()
    np.testing.assert_allclose(scaled, direction, rtol=1e-5, atol=1e-7)
    assert abs(float(np.linalg.norm(scaled)) - 1.0) < 1e-5


@pytest.mark.parametrize("stem", [s for s in SCHEMAS if s.startswith("command-")])
def test_each_command_parses_to_its_correction(stem: str) -> None:
    command = EXAMPLES[stem]
    parsed = parse_command(command.to_json())
    assert parsed == command
    assert correction_of(parsed).command_id == parsed.command_id


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty"),
        (b"not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"type": "obliterate", "command_id": "x", "space": "hq"}', "unknown_command"),
        (b'{"type": "merge", "version": 2, "command_id": "x", "space": "hq", "clusters": [1, 2]}', "unknown_version"),
        (b'{"type": "merge", "command_id": "x", "space": "hq", "clusters": [1]}', "malformed"),
        (b'{"type": "label", "command_id": "x y\n", "space": "hq", "cluster": 1, "name": "a"}', "malformed"),
        (b'{"type": "split", "command_id": "x", "space": "hq", "faces": []}', "malformed"),
        (b'{"type": "forget", "command_id": "x", "space": "hq", "camera": "a", "before": 1}', "malformed"),
        (b'{"type": "forget", "command_id": "x", "space": "hq"}', "malformed"),
        (b'{"type": "reject", "command_id": "x", "space": "hq", "face": "a:1:0", "cluster": 1, "why": 1}', "malformed"),
        (b'{"type": "merge", "command_id": "x", "space": "hq:east", "clusters": [1, 2]}', "malformed"),
    ],
)
def test_a_bad_command_is_refused_with_its_reason(value: bytes, reason: str) -> None:
    with pytest.raises(MessageError) as caught:
        parse_command(value)
    assert caught.value.reason == reason
