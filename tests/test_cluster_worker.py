"""The cluster worker on the real broker and Redis: one assignment per face, the clusters of an uninterrupted
in-memory run, bad records dead-lettered, index snapshots as it goes and a space handed over with one.
Faults mid-stream are in tests/test_cluster_worker_faults.py."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from prometheus_client import REGISTRY

from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_store import RedisStore
from clustering.settings import ClusteringSettings, RankOrderSettings
from streaming.messages import DeadLetter, FaceRecord
from tests.cluster_worker_runs import cluster_settings, face_space, publish, state_labels
from tests.streams import identities_view, read_all, reference_labels, synthetic_faces
from workers.cluster.cluster_worker import ClusterWorker
from workers.settings import Settings


def _faces_with_bad_records(settings: Settings) -> tuple[list[FaceRecord], list[bytes], dict[str, bytes]]:
    records = synthetic_faces(600, identities=40, space=face_space(settings), seed=3)
    good = records[0]
    bad = {
        "bad_embedding": good.model_copy(
            update={"face_id": "x:1:0", "embedding": FaceRecord.encode_embedding(good.vector()[:128]), "dimension": 128}
        ).to_json(),
        "unknown_version": good.to_json().replace(b'"version":2', b'"version":7'),
        "malformed": b'{"face_id": "x:2:0"}',
        "empty": b"",
        # A space that cannot name Redis keys (a colon) stopped the stage for good once; now a dead letter.
        "malformed (space)": good.model_copy(update={"face_id": "x:3:0", "space": "hq:east"}).to_json(),
    }
    values = [r.to_json() for r in records]
    # A replay of the first 50 records (an embed worker that crashed before committing), the bad records and
    # a face of another identity space on the same partition.
    foreign = records[1].model_copy(update={"space": face_space(settings) + "b", "face_id": "y:1:0"}).to_json()
    # A bad record with the id of the good face after it: refused, and the good one clustered.
    twin = records[300].model_copy(update={"embedding": FaceRecord.encode_embedding(np.zeros(512, np.float32))})
    stream = values[:300] + list(bad.values()) + [foreign, twin.to_json()] + values[300:] + values[:50]
    return records, stream, {**bad, "bad_embedding (twin)": twin.to_json()}


def test_one_assignment_per_face_and_the_clusters_of_an_in_memory_run(
    kafka_bootstrap: str, redis_url: str, running: Callable[..., None]
) -> None:
    settings = cluster_settings(kafka_bootstrap, redis_url)
    records, stream, bad = _faces_with_bad_records(settings)
    publish(kafka_bootstrap, settings.kafka.faces_topic, stream)

    worker = ClusterWorker(settings, connect(redis_url))

    def seen() -> int:
        c = worker.counters
        return c.faces + c.duplicates + sum(c.dead_letters.values())

    running(worker, lambda: seen() >= len(stream))

    assert worker.counters.faces == len(records) + 1
    assert worker.counters.duplicates == 50
    assert worker.counters.takeovers == 2  # one worker writes both spaces
    expected = reference_labels(records, settings.clustering)
    assert state_labels(settings) == expected
    assert state_labels(settings, face_space(settings) + "b") == {"y:1:0": 0}
    identities = [v for _, v in read_all(kafka_bootstrap, settings.kafka.identities_topic)]
    assigned, view = identities_view([v for v in identities if b'"y:1:0"' not in v])
    assert set(assigned) == set(expected)
    assert set(assigned.values()) == {1}
    assert view == expected  # assignments and merges rebuild the final clusters
    assert sum(b'"y:1:0"' in v for v in identities) == 1
    letters = [DeadLetter.from_json(v) for _, v in read_all(kafka_bootstrap, settings.kafka.dead_letter_topic)]
    assert sorted(letter.value or "" for letter in letters) == sorted(
        DeadLetter.b64(value) or "" for value in bad.values()
    )
    assert all(letter.stage == "cluster" for letter in letters)
    assert sorted(letter.reason for letter in letters) == sorted(reason.split(" ")[0] for reason in bad)


def test_a_writer_stores_index_snapshots_from_forked_children_as_it_goes_and_restarts_from_them(
    kafka_bootstrap: str, redis_url: str, running: Callable[..., None]
) -> None:
    settings = cluster_settings(kafka_bootstrap, redis_url)
    settings = settings.model_copy(
        update={"clustering": ClusteringSettings(rank_order=RankOrderSettings(snapshot_every=100))}
    )
    records = synthetic_faces(600, identities=40, space=face_space(settings), seed=4)
    publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records])
    snapshots_before = REGISTRY.get_sample_value("facestream_snapshot_seconds_count") or 0
    worker = ClusterWorker(settings, connect(redis_url))  # a Kafka consumer, a producer and a lease keeper: threads
    store = RedisStore(connect(redis_url), face_space(settings))
    running(worker, lambda: worker.counters.faces == len(records) and store.snapshot()[1] >= 500)
    expected = reference_labels(records, settings.clustering)
    assert state_labels(settings) == expected  # restored from the latest snapshot plus the faces after it
    assert (REGISTRY.get_sample_value("facestream_snapshot_seconds_count") or 0) >= snapshots_before + 2


def test_a_writer_that_stops_hands_its_space_over_with_a_snapshot_of_every_face(
    kafka_bootstrap: str, redis_url: str, running: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("clustering.redis_state.compaction.HANDOVER_MIN_FACES", 1)
    settings = cluster_settings(kafka_bootstrap, redis_url)
    settings = settings.model_copy(
        update={"clustering": ClusteringSettings(rank_order=RankOrderSettings(snapshot_every=100_000))}
    )
    records = synthetic_faces(300, identities=20, space=face_space(settings), seed=5)
    publish(kafka_bootstrap, settings.kafka.faces_topic, [r.to_json() for r in records])
    worker = ClusterWorker(settings, connect(redis_url))
    running(worker, lambda: worker.counters.faces == len(records))  # then a clean stop
    store = RedisStore(connect(redis_url), face_space(settings))
    # The next writer inserts no face again but the last, partial insert block's (44 of 300).
    assert store.snapshot()[1] == len(records) - len(records) % settings.clustering.index.insert_block
    assert state_labels(settings) == reference_labels(records, settings.clustering)
