"""The identity API of a running cluster worker, on the real broker and Redis: a bearer token or 401 (counted,
never logged), identities listed and shown from Redis by any worker, search by embedding on the writer only."""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_store import RedisStore
from models.analyzer import FaceAnalyzer
from models.registry import sample_images
from models.settings import ModelSettings
from streaming.messages import FaceQuality, FaceRecord
from streaming.sources import FrameSource
from tests.local_services import free_port, fresh_kafka, wait_for
from tests.streams import identities_view, read_all, running, synthetic_faces
from workers.cli import main
from workers.cluster.cluster_worker import ClusterWorker
from workers.plumbing.service import identity_api
from workers.settings import Settings, WorkerSettings

TOKEN = "token-" + uuid.uuid4().hex


def _call(port: int, path: str, body: object = None, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}"} if token else {},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _unauthorized() -> float:
    return REGISTRY.get_sample_value("facestream_api_unauthorized_total") or 0.0


def test_the_identity_api_lists_shows_and_searches_with_a_token_only(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kafka = fresh_kafka(kafka_bootstrap)
    space = "api" + uuid.uuid4().hex[:8]
    (tmp_path / "token").write_text(TOKEN + "\n")
    worker_settings = WorkerSettings(
        cluster_group=f"cluster-{space}",
        redis_url=redis_url,
        metrics_port=0,
        api_port=free_port(),
        api_token_file=tmp_path / "token",
    )
    settings = Settings(kafka=kafka, worker=worker_settings)
    records = synthetic_faces(300, identities=20, space=space, seed=7)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for record in records:
        producer.produce(kafka.faces_topic, key=space.encode(), value=record.to_json())
    assert producer.flush(30) == 0

    worker = ClusterWorker(settings, connect(redis_url))
    api = identity_api(settings, connect(redis_url), worker)
    port = api.port

    def assigned() -> bool:
        values = [v for _, v in read_all(kafka_bootstrap, kafka.identities_topic, 1.0)]
        return len(identities_view(values)[0]) == len(records)

    try:
        with running(worker):
            wait_for(assigned, 90, "every face assigned")
            before = _unauthorized()
            assert _call(port, f"/v1/spaces/{space}/identities", token=None)[0] == 401
            assert _call(port, f"/v1/spaces/{space}/identities", token="guess")[0] == 401
            assert _unauthorized() == before + 2

            stored = RedisStore(connect(redis_url), space).load().clusters
            status, listed = _call(port, f"/v1/spaces/{space}/identities?limit=5")
            assert status == 200
            assert listed["total"] == len(stored)
            sizes = [identity["size"] for identity in listed["identities"]]
            assert sizes == sorted(sizes, reverse=True)
            assert sizes[0] == max(summary.size for summary in stored.values())

            biggest = listed["identities"][0]
            status, shown = _call(port, f"/v1/spaces/{space}/identities/{biggest['id']}")
            assert (status, shown["identity"]) == (200, biggest)
            assert _call(port, f"/v1/spaces/{space}/identities/999999")[0] == 404

            face = next(r for r in records if r.face_id == biggest["representatives"][0])
            status, found = _call(port, f"/v1/spaces/{space}/search", {"embedding": face.embedding, "k": 3})
            assert status == 200
            assert found["matches"][0]["identity"]["id"] == biggest["id"]
            assert found["matches"][0]["similarity"] > 0.99
            status, as_list = _call(port, f"/v1/spaces/{space}/search", {"embedding": face.vector().tolist(), "k": 1})
            assert as_list["matches"][0]["identity"]["id"] == biggest["id"]
            for bad in ({"embedding": [1.0, 2.0]}, {"embedding": [0.0] * 512}, {"embedding": face.embedding, "k": 0}):
                assert _call(port, f"/v1/spaces/{space}/search", bad)[0] == 400
            assert _call(port, "/v1/spaces/a:b/identities")[0] == 400

        # A worker that does not write the space still lists it from Redis, and says it cannot search it.
        standby = ClusterWorker(settings, connect(redis_url))
        other = identity_api(
            settings.model_copy(update={"worker": worker_settings.model_copy(update={"api_port": 0})}),
            connect(redis_url),
            standby,
        )
        try:
            assert _call(other.port, f"/v1/spaces/{space}/identities")[1]["total"] == len(stored)
            status, refused = _call(other.port, f"/v1/spaces/{space}/search", {"embedding": face.embedding})
            assert status == 409
            assert "does not write space" in refused["error"]
            photo = base64.b64encode(sample_images()[0].read_bytes()).decode()
            assert _call(other.port, f"/v1/spaces/{space}/search", {"image": photo})[0] == 409
        finally:
            other.stop()
    finally:
        api.stop()
    assert TOKEN not in caplog.text
    assert "guess" not in caplog.text


def test_the_identity_api_does_not_start_without_a_token(redis_url: str, kafka_bootstrap: str) -> None:
    settings = Settings(
        kafka=fresh_kafka(kafka_bootstrap), worker=WorkerSettings(redis_url=redis_url, api_port=free_port())
    )
    worker = ClusterWorker(settings, connect(redis_url))
    with pytest.raises(ValueError, match="API_TOKEN_FILE"):
        identity_api(settings, connect(redis_url), worker)


def test_the_identity_api_and_cli_search_by_photo_list_and_label(
    kafka_bootstrap: str,
    redis_url: str,
    tmp_path: Path,
    analyzer: FaceAnalyzer,
    cpu_models: ModelSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kafka = fresh_kafka(kafka_bootstrap)
    space = "cli" + uuid.uuid4().hex[:8]
    (tmp_path / "token").write_text(TOKEN)
    config = WorkerSettings(
        cluster_group=f"cluster-{space}", redis_url=redis_url, metrics_port=0, api_port=free_port(),
        api_token_file=tmp_path / "token",
    )  # fmt: skip
    settings = Settings(kafka=kafka, worker=config, models=cpu_models)
    photos = sample_images()
    records = []
    for number, photo in enumerate(photos):
        image = next(iter(FrameSource(str(photo)))).image  # type: ignore[union-attr]
        for face in analyzer.analyze([image])[0]:
            if face.embedding is not None:
                records.append(
                    FaceRecord(
                        face_id=f"photo{number}:0:{face.index}", space=space, camera=f"photo{number}", frame=0,
                        timestamp=0.0, box=tuple(float(v) for v in face.box), landmarks=[(0.0, 0.0)] * 5,
                        score=face.score, quality=FaceQuality(face_size=50.0, sharpness=50.0, yaw=0.0),
                        model="w600k_mbf", embedding=FaceRecord.encode_embedding(face.embedding), dimension=512,
                    )
                )  # fmt: skip
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for record in records:
        producer.produce(kafka.faces_topic, key=space.encode(), value=record.to_json())
    assert producer.flush(30) == 0
    for name, value in {
        "FACESTREAM_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "FACESTREAM_KAFKA__COMMANDS_TOPIC": kafka.commands_topic,
        "FACESTREAM_WORKER__API_PORT": str(config.api_port),
        "FACESTREAM_WORKER__API_TOKEN_FILE": str(tmp_path / "token"),
        "FACESTREAM_MODELS__RUNTIME__CACHE_DIR": str(cpu_models.runtime.cache_dir),
        "FACESTREAM_MODELS__RUNTIME__PROVIDERS": '["CPUExecutionProvider"]',
    }.items():
        monkeypatch.setenv(name, value)

    def cli(*args: str) -> dict[str, Any]:
        capsys.readouterr()
        assert main(["identity", *args, "--space", space]) == 0
        answer: dict[str, Any] = json.loads(capsys.readouterr().out)
        return answer

    worker = ClusterWorker(settings, connect(redis_url))
    api = identity_api(settings, connect(redis_url), worker)
    try:
        with running(worker):
            wait_for(lambda: RedisStore(connect(redis_url), space).count() == len(records), 60, "faces clustered")
            found = cli("search", str(photos[0]), "-k", "2")["matches"]
            assert found[0]["similarity"] > 0.95  # the photo's own face
            cluster = found[0]["identity"]["id"]
            # The API takes the photo itself too, and says clearly what it cannot use.
            query = base64.b64encode(photos[0].read_bytes()).decode()
            status, by_image = _call(api.port, f"/v1/spaces/{space}/search", {"image": query, "k": 2})
            assert status == 200
            assert by_image["matches"][0]["identity"]["id"] == cluster
            assert by_image["matches"][0]["similarity"] == pytest.approx(found[0]["similarity"], abs=1e-3)
            blank = base64.b64encode(cv2.imencode(".png", np.full((200, 200, 3), 127, np.uint8))[1].tobytes())
            status, faceless = _call(api.port, f"/v1/spaces/{space}/search", {"image": blank.decode()})
            assert (status, faceless["error"]) == (422, "no face in the image passed the quality gate")
            for bad in ({"image": "not base64!"}, {"image": base64.b64encode(b"GIF89a broken").decode()}, {"image": 3}):
                assert _call(api.port, f"/v1/spaces/{space}/search", bad)[0] == 400
            both = {"image": query, "embedding": [0.1] * 512}
            assert _call(api.port, f"/v1/spaces/{space}/search", both)[0] == 400
            assert cli("list")["total"] == len(RedisStore(connect(redis_url), space).load().clusters)
            sent = cli("label", str(cluster), "Guest")["sent"]
            assert sent["type"] == "label"
            wait_for(lambda: cli("show", str(cluster))["identity"]["name"] == "Guest", 60, "the label applied")
    finally:
        api.stop()
    capsys.readouterr()
    assert main(["identity", "label", "3", "--space", space]) == 1  # neither a name nor --clear
