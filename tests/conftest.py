"""Shared fixtures: the labeled data beside the checkout, and one CPU analyzer for the whole session."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_store import RedisStore
from clustering.store import InMemoryStore, StateStore
from models.analyzer import FaceAnalyzer
from models.settings import ModelSettings, RuntimeSettings
from tests import local_services
from tests.leftovers import mark_session, reap_leftovers
from tests.live_servers import MjpegServer, mjpeg_server
from tests.local_services import kafka_broker, redis_server
from tests.services import missing
from workers.cluster.cluster_worker import ClusterWorker

# Many tests compare a worker's clusters with a reference run's, face for face. One insert thread makes the HNSW
# graph, and so the clusters, a function of the faces' order alone (docs/architecture.md, "Faces enter the HNSW
# index a block at a time"); tests that build their settings in code use every core, as the default does.
os.environ.setdefault("FACESTREAM_CLUSTERING__INDEX__INSERT_THREADS", "1")

#: A missing binary skips the tests that need it, or fails them in CI (FACESTREAM_REQUIRE_SERVICES).
local_services.on_missing = missing

#: Every process the tests start carries this session's mark; one still running at the end fails the session.
SESSION = mark_session()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller checks once for all
    left = reap_leftovers(SESSION)
    if left:
        lines = "\n".join(f"  {pid}: {command[:200]}" for pid, command in sorted(left.items()))
        print(f"\nthe tests left {len(left)} process(es) running (now killed):\n{lines}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_dir(*parts: str) -> Path:
    """A folder of ../shared/data, or a clean skip where a fresh clone has none."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (labeled data lives in ../shared/data beside the checkout)")
    return path


def read_bgr(path: Path) -> NDArray[np.uint8]:
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return np.asarray(image, dtype=np.uint8)


@pytest.fixture(scope="session")
def cpu_models(tmp_path_factory: pytest.TempPathFactory) -> ModelSettings:
    cache = tmp_path_factory.mktemp("model-cache")
    return ModelSettings(runtime=RuntimeSettings(providers=("CPUExecutionProvider",), cache_dir=cache))


@pytest.fixture(scope="session")
def analyzer(cpu_models: ModelSettings) -> FaceAnalyzer:
    return FaceAnalyzer.from_settings(cpu_models)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with kafka_broker(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


StoreFactory = Callable[[], StateStore]


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """A factory of fresh stores; the Redis ones are spaces with unique names on a real redis-server."""
    if request.param == "memory":
        yield InMemoryStore
        return
    client = connect(request.getfixturevalue("redis_url"))
    stores: list[RedisStore] = []

    def factory() -> StateStore:
        stores.append(RedisStore(client, f"test-{uuid.uuid4().hex[:12]}"))
        return stores[-1]

    yield factory
    for store in stores:
        store.clear()


@pytest.fixture
def running() -> Iterator[Callable[[ClusterWorker, Callable[[], bool]], None]]:
    """Runs a worker in a thread until a condition holds, then stops it cleanly."""
    threads: list[tuple[threading.Thread, threading.Event]] = []

    def start(worker: ClusterWorker, done: Callable[[], bool], timeout_s: float = 120) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop.is_set,), daemon=True)
        thread.start()
        threads.append((thread, stop))
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.1)
        stop.set()
        thread.join(timeout=60)
        assert done(), "the worker did not finish in time"

    yield start
    for thread, stop in threads:
        stop.set()
        thread.join(timeout=60)


@pytest.fixture(scope="session")
def clip() -> list[bytes]:
    """60 JPEG frames of a short clip of one person, as a live camera of the tests serves them."""
    from tests.live_servers import clip_jpegs  # noqa: PLC0415 - only the live-camera tests need OpenCV's reader

    return clip_jpegs(data_dir("videos", "intel_head-pose-face-detection-male.mp4"), 60)


@pytest.fixture
def server() -> Iterator[MjpegServer]:
    """An HTTP MJPEG server on 127.0.0.1 with no camera yet: a test adds its paths."""
    with mjpeg_server() as running:
        yield running
