"""Throughput, latency and memory of the online clustering engine on synthetic faces, per state store.

Synthetic 512-d unit embeddings with identity structure: identity sizes follow a Zipf law (most people seen
once, a few very often), and two faces of one person have cosine similarity about 0.6, of two people about
0, as with ArcFace. Each size runs in a fresh subprocess so that its memory figure is its own.

    uv run python -m bench.clustering [--sizes 10000 100000] [--million] [--stores memory redis]

Memory per face is the growth of this process's resident set divided by the faces, less the 2,048 bytes of
the embedding itself; for Redis, Redis's own used_memory per face is printed beside it. With Redis, as the
cluster worker does, every write is fenced by the space's writer lease, renewed by its own thread ("lease":
held to the end, or LOST; a write after losing it would stop the bench), and index snapshots are stored by a
forked child every ``snapshot_every`` faces; after the run the engine is restored from Redis (the latest
snapshot plus the faces after it): "restart s".

Every face comes with a picture as the cluster worker gets one (``--picture-bytes``, random bytes of about the
size of the embed stage's WebP thumbnails at quality 45: 900 bytes on average over 365 LFW faces, 1,114 at
p90), kept in Redis while the face is among its identity's 3 best ("pictures": how many Redis holds at the end).

Faces come in batches of 256, as the cluster worker reads them, each announced to the engine first (its index
searches are made together) and stored in one Redis round trip. "p50/p99/max ms" are single faces' times (the
face that fills an insert block pays for inserting it, the last face of a batch for the round trip and, every
``snapshot_every`` faces, the fork of the snapshot child); "batch p99"
is a batch's whole time: what every face of it waits before the worker publishes its assignment.
"unstolen" is the longest face during which the hypervisor took no CPU from this machine, and "steal s" all
the CPU time it took during the run, all CPUs together (bench/host_steal.py): on a shared VM the longest face
is often a pause of the host's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench.host_steal import StealCounter
from clustering.engine import OnlineRankOrder
from clustering.redis_state.compaction import Compactor, SnapshotJob
from clustering.redis_state.lease import LeaseKeeper, WriterLease
from clustering.redis_state.redis_client import RedisAddress, connect
from clustering.redis_state.redis_keys import Key
from clustering.redis_state.redis_store import RedisStore
from clustering.settings import ClusteringSettings
from clustering.store import InMemoryStore, StateStore
from tests.local_services import redis_server
from workers.settings import WorkerSettings

DIM = 512
#: As the images run the workers (deploy/docker): large allocations in huge pages, so forks copy fewer page tables.
HUGE_PAGES_ENV = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
BATCH = 256  # the cluster worker's default batch (FACESTREAM_WORKER__CLUSTER_BATCH_SIZE)


def synthetic_faces(count: int, seed: int = 0) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.zipf(2.0, size=count), 500)
    people = np.repeat(np.arange(count), sizes)[:count]
    rng.shuffle(people)
    centres = rng.normal(size=(int(people.max()) + 1, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    faces = centres[people] + rng.normal(scale=0.036, size=(count, DIM)).astype(np.float32)
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    return faces


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def pictures(mean_bytes: int, seed: int = 0) -> list[bytes]:
    """A pool of stand-ins for face thumbnails: random bytes (incompressible, as a WebP is) around ``mean_bytes``."""
    rng = np.random.default_rng(seed)
    if not mean_bytes:
        return []
    sizes = np.clip(rng.normal(mean_bytes, mean_bytes * 0.12, size=64), 1, None).astype(int)
    return [rng.bytes(int(size)) for size in sizes]


def measure(count: int, store_kind: str, picture_bytes: int) -> dict[str, float]:
    faces = synthetic_faces(count)
    pool = pictures(picture_bytes)
    with tempfile.TemporaryDirectory() as folder:
        if store_kind == "redis":
            with redis_server(Path(folder)) as server:
                client = connect(server.url)
                # As the cluster worker does: the space's writer lease, kept by its own thread and fencing every
                # write; index snapshots stored by a forked child, off the hot path.
                worker = WorkerSettings()
                lease = WriterLease(client, "bench", worker.lease_ttl_s)
                if not lease.acquire():
                    raise RuntimeError("the bench's fresh Redis already has a writer for its space")
                keeper = LeaseKeeper(lease, worker.writer_stall_s)
                keeper.start()
                store = RedisStore(client, "bench", lease.token)
                every = ClusteringSettings().rank_order.snapshot_every
                compactor = Compactor(SnapshotJob(RedisAddress(server.url), "bench", lease.token, DIM), every, 0)
                result = _run(faces, store, client, compactor, keeper, pool=pool)
                result["lease_lost"] = float(keeper.lost is not None)
                keeper.stop()
                started = time.perf_counter()
                while compactor.running():
                    time.sleep(0.1)
                result["snapshot_wait_s"] = time.perf_counter() - started
                started = time.perf_counter()
                restored = OnlineRankOrder.restore(store, DIM, ClusteringSettings())
                result["restart_s"] = time.perf_counter() - started
                result["snapshot_faces"] = float(store.snapshot()[1])
                assert len(restored) == len(faces)
                return result
        return _run(faces, InMemoryStore(), None, None, None, pool=pool)


def _run(
    faces: NDArray[np.float32],
    store: StateStore,
    client: object,
    compactor: Compactor | None,
    keeper: LeaseKeeper | None,
    *,
    pool: list[bytes],
) -> dict[str, float]:
    engine = OnlineRankOrder(DIM, ClusteringSettings(), store)
    before = _rss_bytes()
    latencies = np.empty(len(faces))
    stolen = np.zeros(len(faces), dtype=np.int64)  # steal ticks while each face was timed
    steal = StealCounter()
    batches = []
    start = time.perf_counter()
    for first in range(0, len(faces), BATCH):
        batch_started = time.perf_counter()
        last = min(first + BATCH, len(faces)) - 1
        # As the cluster worker does: a batch's deltas reach Redis in one round trip at its end.
        with store.batch() if isinstance(store, RedisStore) else nullcontext():
            engine.expect({f"cam:{i}:0": faces[i] for i in range(first, last + 1)})  # as the worker does
            mark = steal.ticks()
            for i in range(first, last + 1):
                t0 = time.perf_counter()
                picture = (lambda i=i: pool[i % len(pool)]) if pool else None
                engine.add(f"cam:{i}:0", faces[i], camera="cam", frame=i, thumbnail=picture)
                latencies[i] = time.perf_counter() - t0
                now = steal.ticks()  # one read a face: this face's end is the next one's start
                stolen[i], mark = now - mark, now
            t0 = time.perf_counter()
        gc.freeze()  # as the cluster worker does after each batch: full collections skip the engine's objects
        if compactor is not None:
            compactor.after(engine.index)  # the fork: the next batch waits for it
        # The batch's round trip and the fork, charged to its last face.
        latencies[last] += time.perf_counter() - t0
        stolen[last] += steal.ticks() - mark
        batches.append(time.perf_counter() - batch_started)
        if keeper is not None:
            keeper.progressed()  # as the worker's loop does after each batch
    seconds = time.perf_counter() - start
    steal.close()
    grown = _rss_bytes() - before
    result = {
        "faces": float(len(faces)),
        "faces_per_s": len(faces) / seconds,
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p99_ms": float(np.percentile(latencies, 99) * 1000),
        "max_ms": float(latencies.max() * 1000),
        "max_unstolen_ms": float(latencies[stolen == 0].max(initial=0.0) * 1000),
        "steal_s": float(stolen.sum() * StealCounter.TICK_S),
        "batch_p99_ms": float(np.percentile(batches, 99) * 1000),
        "bytes_per_face_beyond_embedding": grown / len(faces) - DIM * 4,
        "clusters": float(engine.cluster_count),
    }
    if client is not None:
        info = client.info("memory")  # type: ignore[attr-defined]
        result["redis_bytes_per_face"] = float(info["used_memory"]) / len(faces)
        result["pictures"] = float(client.hlen(store.keys.of(Key.THUMBNAILS)))  # type: ignore[attr-defined]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000], help="none: only --million")
    parser.add_argument("--million", action="store_true", help="add a run of 1,000,000 faces")
    parser.add_argument("--stores", nargs="+", default=["memory", "redis"], choices=["memory", "redis"])
    parser.add_argument("--picture-bytes", type=int, default=900, help="mean size of a face's picture (0: none)")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1], args.picture_bytes)))
        return
    sizes = [*args.sizes, *([1_000_000] if args.million else [])]
    print(
        f"{'faces':>9} {'store':<7}{'faces/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>9}{'unstolen':>9}"
        f"{'steal s':>8}{'batch p99':>10}{'B/face':>8}{'redis B/face':>13}{'clusters':>10}{'restart s':>10}"
        f"{'snapshot':>10}{'lease':>7}{'pictures':>10}"
    )
    for size in sizes:
        for store in args.stores:
            one = ["--one", str(size), store, "--picture-bytes", str(args.picture_bytes)]
            output = subprocess.run(
                [sys.executable, "-m", "bench.clustering", *one],
                env=HUGE_PAGES_ENV,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            r = json.loads(output.strip().splitlines()[-1])
            redis_bytes = f"{r['redis_bytes_per_face']:>13.0f}" if "redis_bytes_per_face" in r else f"{'-':>13}"
            restart = (
                f"{r['restart_s']:>10.1f}{r['snapshot_faces']:>10.0f}" if "restart_s" in r else f"{'-':>10}{'-':>10}"
            )
            lease = f"{'-':>7}" if "lease_lost" not in r else f"{'LOST' if r['lease_lost'] else 'held':>7}"
            pictured = f"{r['pictures']:>10.0f}" if "pictures" in r else f"{'-':>10}"
            print(
                f"{size:>9} {store:<7}{r['faces_per_s']:>9.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}"
                f"{r['max_ms']:>9.1f}{r['max_unstolen_ms']:>9.1f}{r['steal_s']:>8.2f}{r['batch_p99_ms']:>10.0f}{r['bytes_per_face_beyond_embedding']:>8.0f}{redis_bytes}{r['clusters']:>10.0f}"
                f"{restart}{lease}{pictured}",
                flush=True,
            )
    print(
        "target at 1M faces with Redis: >= 1,000 faces/s, p99 <= 10 ms, max <= 100 ms, restart <= 60 s, "
        "<= 2.5 KB/face, no lease lost"
    )


if __name__ == "__main__":
    main()
