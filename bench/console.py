"""What the console's first page costs in a large space: the identity API's list of the largest identities and
the pictures of their best faces, through HTTP, from a fresh redis-server holding ``--identities`` identities.

    uv run python -m bench.console [--identities 100000] [--page 48] [--repeats 30]

The space is written straight into Redis as the apply script leaves it (each identity's summary, its place in
the sizes index, the picture of its best face: a WebP of the embed stage's size), since what is measured is the
read: one page of the sizes index, the page's summaries in one HMGET, then one picture request per identity, one
after another (a browser makes up to six at once). The deepest page is timed too: a page is read by rank from the
sorted index, so it costs the same wherever it is (no scan). Medians over ``--repeats``; the target is under
300 ms for the first page of a space of 100,000 identities.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np

from clustering.redis_state import redis_records as records
from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_keys import Key, SpaceKeys
from clustering.store import ClusterSummary
from streaming.commands import Command
from tests.local_services import redis_server
from workers.identity.identity_api import IdentityApi, WorkerIdentities

TOKEN = uuid.uuid4().hex
SPACE = "bench"


class _NoCommands:
    def send(self, command: Command) -> str:
        raise RuntimeError("the bench sends no command")


def _picture(rng: np.random.Generator) -> bytes:
    """A 112x112 WebP at the embed stage's quality, of a smooth random image (about a face's size)."""
    small = rng.integers(0, 255, size=(14, 14, 3), dtype=np.uint8)
    face = cv2.GaussianBlur(cv2.resize(small, (112, 112), interpolation=cv2.INTER_CUBIC), (5, 5), 0)
    return bytes(cv2.imencode(".webp", face, [cv2.IMWRITE_WEBP_QUALITY, 60])[1].tobytes())


def fill(url: str, identities: int) -> int:
    """Writes ``identities`` summaries, the sizes index and best-face pictures; returns the pictures' mean size."""
    client = connect(url)
    keys = SpaceKeys(SPACE)
    rng = np.random.default_rng(0)
    pool = [_picture(rng) for _ in range(32)]
    sizes = np.minimum(rng.zipf(2.0, size=identities), 500)
    pipe = client.pipeline(transaction=False)
    for root in range(identities):
        face = f"cam:{root}:0"
        summary = ClusterSummary(root, int(sizes[root]), 1.7e9, 1.7e9 + root, ("cam",), ((0.9, face),))
        pipe.hset(keys.of(Key.CLUSTERS), str(root), records.summary_json(summary))
        pipe.zadd(keys.of(Key.SIZES), {str(root): records.size_score(summary.size, root)})
        pipe.hset(keys.of(Key.THUMBNAILS), face, pool[root % len(pool)])
        if root % 5_000 == 4_999:
            pipe.execute()
    pipe.execute()
    return int(statistics.mean(len(p) for p in pool))


def _get(port: int, path: str) -> bytes:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http to this machine
        return bytes(response.read())


def page_ms(port: int, offset: int, page: int) -> tuple[float, float]:
    """(list, list and pictures) milliseconds of one page."""
    started = time.perf_counter()
    listed = json.loads(_get(port, f"/v1/spaces/{SPACE}/identities?limit={page}&offset={offset}"))
    listed_s = time.perf_counter() - started
    for identity in listed["identities"]:
        _get(port, f"/v1/spaces/{SPACE}/faces/{identity['representatives'][0]}/thumbnail")
    return listed_s * 1000, (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=48, help="identities a page (the console shows 48)")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, redis_server(Path(folder)) as server:
        started = time.perf_counter()
        picture_bytes = fill(server.url, args.identities)
        print(f"{args.identities} identities written in {time.perf_counter() - started:.1f} s "
              f"(pictures {picture_bytes} bytes at mean)")  # fmt: skip
        reader = WorkerIdentities(connect(server.url), lambda _: None, threading.Lock(), lambda: None)  # type: ignore[arg-type,return-value]
        api = IdentityApi(reader, _NoCommands(), "127.0.0.1", 0, token=TOKEN, dimension=512).start()
        try:
            print(f"{'page':<10}{'list ms':>10}{'+ pictures ms':>15}   (medians of {args.repeats})")
            for name, offset in (("first", 0), ("deepest", max(0, args.identities - args.page))):
                runs = [page_ms(api.port, offset, args.page) for _ in range(args.repeats)]
                listed = statistics.median(r[0] for r in runs)
                whole = statistics.median(r[1] for r in runs)
                print(f"{name:<10}{listed:>10.1f}{whole:>15.1f}")
        finally:
            api.stop()
    print("target: the first page of 100,000 identities in under 300 ms")


if __name__ == "__main__":
    main()
