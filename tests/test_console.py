"""The console in a real browser (Debian's chromium, driven by Playwright) against a `facestream worker` on the
real broker and Redis, fed by `facestream produce`: what an operator does with it, checked on the page, on the
identities topic and in Redis. Screenshots go to the test's folder (and to FACESTREAM_SCREENSHOTS when set)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_keys import Key
from clustering.redis_state.redis_store import RedisStore
from models.registry import sample_images
from models.settings import ModelSettings
from streaming.produce import produce_sources
from streaming.sources import FrameSource
from tests.conftest import data_dir
from tests.local_services import free_port, wait_for
from tests.services import missing
from tests.streams import read_all
from tests.worker_processes import settings_for, space_of, stop_process, worker_process
from workers.settings import Settings

playwright = pytest.importorskip("playwright.sync_api")

TOKEN = "console-" + uuid.uuid4().hex
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("chromium (Debian's package: the console's browser tests)")
    return found


def _events(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [json.loads(value) for _, value in read_all(bootstrap, topic, idle_s=1.0)]


def _unauthorized(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@contextlib.contextmanager
def _serving(settings: Settings, sources: list[FrameSource], store: RedisStore, tmp_path: Path) -> Iterator[int]:
    """A worker (both stages, identity API on) fed ``sources`` by `facestream produce`; its API port."""
    space = space_of(settings)
    produced = produce_sources(sources, settings.kafka, space=space)
    assert produced.failed == 0
    (tmp_path / "token").write_text(TOKEN)
    port = free_port()
    worker = worker_process(
        settings, "all", f"embed-{space}", free_port(),
        FACESTREAM_WORKER__API_PORT=str(port), FACESTREAM_WORKER__API_TOKEN_FILE=str(tmp_path / "token"),
    )  # fmt: skip
    try:
        wait_for(lambda: _settled(store) or worker.poll() is not None, 180, "the faces clustered")
        wait_for(lambda: _unauthorized(port, "/console/") == 200, 30, "the console served")
        yield port
    finally:
        _, err = stop_process(worker)
        assert worker.returncode == 0, err[-3000:]


@pytest.fixture
def service(
    kafka_bootstrap: str, redis_url: str, cpu_models: ModelSettings, tmp_path: Path
) -> Iterator[tuple[int, str, RedisStore, str]]:
    """A worker fed the sample photos from two cameras: (API port, space, store, identities topic)."""
    settings = settings_for(kafka_bootstrap, redis_url, cpu_models)
    space = space_of(settings)
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in sample_images():
        shutil.copy(photo, photos / photo.name)
    # The same photos from two cameras: each person is seen twice, in frames of their own.
    sources = [FrameSource(str(photos), "lobby"), FrameSource(str(photos), "door")]
    store = RedisStore(connect(redis_url), space)
    with _serving(settings, sources, store, tmp_path) as port:
        yield port, space, store, settings.kafka.identities_topic


def _sign_in(page: Any, port: int, space: str) -> None:
    page.goto(f"http://127.0.0.1:{port}/")
    page.fill("#token", TOKEN)
    page.click("#login-form button")
    assert TOKEN not in page.url
    page.fill("#space", space)
    page.click("#find button[type=submit]")


def _settled(store: RedisStore) -> bool:
    """Whether the faces have stopped coming: the count is above none and the same after two seconds."""
    before = store.count()
    time.sleep(2.0)
    return before == store.count() > 0


def _photo_of(face_id: str) -> str:
    """Which photo a face is of (its frame number; both cameras number the photos alike)."""
    return face_id.rsplit(":", 2)[-2]


def _pairs(store: RedisStore) -> dict[str, list[int]]:
    """The identities of two faces (one person in both cameras), by the photo they are of."""
    found: dict[str, list[int]] = {}
    for summary in store.reads.largest_clusters(0, 100)[1]:
        if summary.size == 2:
            found.setdefault(_photo_of(summary.representatives[0][1]), []).append(summary.id)
    return found


def _shoot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    if target := os.environ.get("FACESTREAM_SCREENSHOTS"):
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)


def _cards(page: Any) -> Any:
    return page.locator("#grid li.card")


def test_an_operator_names_merges_splits_rejects_forgets_and_searches_in_the_console(
    service: tuple[int, str, RedisStore, str], chromium: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    port, space, store, identities_topic = service
    # Without the token nothing is answered but the page itself.
    assert _unauthorized(port, f"/v1/spaces/{space}/identities") == 401
    assert _unauthorized(port, f"/v1/spaces/{space}/faces/x/thumbnail") == 401
    clusters = store.reads.largest_clusters(0, 100)[0]
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            # The page forbids eval; the test reads it through Playwright's evaluations, which need it.
            page = browser.new_page(viewport={"width": 1100, "height": 800}, bypass_csp=True)
            page.set_default_timeout(WAIT_MS)
            _sign_in(page, port, space)
            page.wait_for_function(f"document.querySelectorAll('#grid li.card').length === {clusters}")
            page.wait_for_function("document.querySelectorAll('#grid img[data-face]').length >= 3")
            page.wait_for_function(
                "[...document.querySelectorAll('#grid img')].every(img => img.complete && img.naturalWidth === 112)"
            )
            _shoot(page, tmp_path, "identities")

            # Name one: on its page, then on the grid and the identities topic.
            _cards(page).nth(0).locator("a.title").click()
            page.fill("#label", "Guest of honour")
            page.click("#label-form button[type=submit]")
            page.wait_for_function("document.querySelector('#identity-title').textContent === 'Guest of honour'")
            _shoot(page, tmp_path, "identity")
            page.goto(f"http://127.0.0.1:{port}/console/#/")
            page.fill("#name-query", "guest")
            page.click("#find button[type=submit]")
            page.wait_for_function("document.querySelectorAll('#grid li.card').length === 1")
            page.fill("#name-query", "")
            page.click("#find button[type=submit]")
            page.wait_for_function(f"document.querySelectorAll('#grid li.card').length === {clusters}")

            # Merge two identities of two photos (faces of one photo are different people), split a face off a
            # third, say a face of a fourth is not that person.
            pairs = _pairs(store)
            assert len(pairs) == 2, pairs
            crowd, single = sorted(pairs.values(), key=len, reverse=True)
            ids = [crowd[0], single[0]]
            for cluster in ids:
                page.locator(f'#grid li.card[data-id="{cluster}"] input[type=checkbox]').check()
            page.click("#merge")
            page.wait_for_function(f"document.querySelectorAll('#grid li.card').length === {clusters - 1}")
            merged = next(e for e in _events(kafka_bootstrap, identities_topic) if e["type"] == "merged")
            assert sorted([merged["survivor"], *merged["absorbed"]]) == sorted(ids)

            page.goto(f"http://127.0.0.1:{port}/console/#/identity/{crowd[1]}")
            page.wait_for_function("document.querySelectorAll('#faces li.card').length === 2")
            split_face = page.locator("#faces li.card").nth(1).get_attribute("data-face")
            page.locator("#faces li.card").nth(1).locator("input[type=checkbox]").check()
            page.click("#split")
            page.wait_for_function("document.querySelectorAll('#faces li.card').length === 1")
            page.goto(f"http://127.0.0.1:{port}/console/#/identity/{crowd[2]}")
            page.wait_for_function("document.querySelectorAll('#faces li.card').length === 2")
            page.locator("#faces li.card").nth(1).locator("text=Not this person").click()
            page.wait_for_function("document.querySelectorAll('#faces li.card').length === 1")
            events = _events(kafka_bootstrap, identities_topic)
            splits = {e["cluster"]: e for e in events if e["type"] == "split"}
            assert set(splits) == {crowd[1], crowd[2]}
            assert [split_face] in [part["faces"] for part in splits[crowd[1]]["parts"]]

            # Search by photo: the photo of one person finds that person first.
            page.set_input_files("#photo", str(next(p for p in sample_images() if p.name == "yaoming.jpg")))
            page.wait_for_function("document.querySelectorAll('#match-list li.card').length > 0")
            best = page.locator("#match-list li.card").nth(0)
            found_id = int(best.get_attribute("data-id"))
            assert float(best.locator(".facts").last.text_content().split()[-1]) > 0.9
            _shoot(page, tmp_path, "search")

            # Forget that person, after a confirmation: gone from the page, Redis and search.
            pictured = set(store.client.hkeys(store.keys.of(Key.THUMBNAILS)))
            shown = store.reads.cluster(found_id)
            assert shown is not None
            page.goto(f"http://127.0.0.1:{port}/console/#/identity/{found_id}")
            page.click("#forget")
            _shoot(page, tmp_path, "forget")
            page.click("#confirm-ok")
            page.wait_for_url("**/console/#/")
            wait_for(lambda: store.reads.cluster(found_id) is None, 60, "the identity forgotten")
            page.wait_for_function(f"!document.querySelector('#grid li.card[data-id=\"{found_id}\"]')")
            gone = {face.encode() for _, face in shown.representatives}
            assert gone & pictured
            assert not gone & set(store.client.hkeys(store.keys.of(Key.THUMBNAILS)))
            assert not any(store.client.hexists(store.keys.of(Key.FACES), face) for face in gone)
            page.set_input_files("#photo", str(next(p for p in sample_images() if p.name == "yaoming.jpg")))
            page.wait_for_function("document.querySelectorAll('#match-list li.card').length > 0")
            assert found_id not in [
                int(page.locator("#match-list li.card").nth(i).get_attribute("data-id"))
                for i in range(page.locator("#match-list li.card").count())
            ]
            types = [e["type"] for e in _events(kafka_bootstrap, identities_topic)]
            assert {"labelled", "merged", "split", "forgotten"} <= set(types)
        finally:
            browser.close()


def test_an_identity_s_page_shows_where_and_when_it_was_seen(
    kafka_bootstrap: str, redis_url: str, cpu_models: ModelSettings, chromium: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka_bootstrap, redis_url, cpu_models)
    space = space_of(settings)
    clip = data_dir("videos", "intel_head-pose-face-detection-male.mp4")
    store = RedisStore(connect(redis_url), space)
    with _serving(settings, [FrameSource(str(clip), "hall")], store, tmp_path) as port:
        total, largest = store.reads.largest_clusters(0, 1)
        assert total >= 1
        kept, appearances = store.reads.timeline(largest[0].id, None, 0, 100)
        assert kept >= 1
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 390, "height": 844}, bypass_csp=True)  # a phone
                page.set_default_timeout(WAIT_MS)
                # With the keyboard only: sign in, choose the space, open the identity.
                page.goto(f"http://127.0.0.1:{port}/console/")
                page.focus("#token")
                page.keyboard.type(TOKEN)
                page.keyboard.press("Enter")
                page.focus("#space")
                page.keyboard.press("Control+A")
                page.keyboard.type(space)
                page.keyboard.press("Enter")
                page.wait_for_function("document.querySelectorAll('#grid li.card').length > 0")
                page.focus(f'#grid li.card[data-id="{largest[0].id}"] a.title')
                page.keyboard.press("Enter")
                page.wait_for_function(f"document.querySelectorAll('#seen li').length === {min(kept, 20)}")
                newest = page.locator("#seen li").nth(0)
                assert newest.get_attribute("data-track") == appearances[0].track
                assert newest.text_content().startswith("hall: ")
                page.wait_for_function("document.querySelectorAll('#seen img[data-face]').length >= 1")
                _shoot(page, tmp_path, "timeline")
                # The camera filter: this person was seen at one camera only, so it keeps every line.
                page.select_option("#seen-camera", "hall")
                page.wait_for_function(f"document.querySelectorAll('#seen li').length === {min(kept, 20)}")
            finally:
                browser.close()
