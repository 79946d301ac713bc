"""Erasure in steps: how long one forget holds Redis, by step size.

A space of synthetic faces (bench/clustering.py's, two cameras taking turns) is written to a fresh
redis-server through the engine, as the cluster worker writes it; then one camera's faces (half the space,
spread over every cluster) are forgotten with each step size, and then the largest cluster. Printed per step
size: the steps, the longest single script call (Redis serves no other client meanwhile) and the erasure's
total time; the ratio is the longest call against the erasure made at once, in the same run.

    uv run python -m bench.erasure [--faces 20000] [--steps 500 2000 0]

A step size of 0 means at once (no steps). The default step size (clustering.erasure_step_faces) is chosen
from this table: the largest whose longest call stays well under 100 ms on this 2-core machine
(docs/operations.md, Erasure in steps).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.clustering import DIM, synthetic_faces
from clustering.corrections import ForgetFaces
from clustering.engine import OnlineRankOrder
from clustering.redis_state.redis_client import connect
from clustering.redis_state.redis_store import RedisStore
from clustering.settings import ClusteringSettings
from tests.local_services import redis_server

BATCH = 64


class TimedStore(RedisStore):
    """Records how long each script call took."""

    calls: list[float] = []  # noqa: RUF012 - set anew on the instance before each erasure

    def _run(self, operations: list[list[Any]]) -> list[int]:
        started = time.perf_counter()
        try:
            return super()._run(operations)
        finally:
            if operations:
                self.calls.append(time.perf_counter() - started)


def filled_engine(store: TimedStore, faces: int, step_faces: int) -> OnlineRankOrder:
    settings = ClusteringSettings(erasure_step_faces=step_faces or faces)
    engine = OnlineRankOrder(DIM, settings, store)
    vectors = synthetic_faces(faces)
    for first in range(0, faces, BATCH):
        with store.batch():
            for i in range(first, min(first + BATCH, faces)):
                engine.add(f"cam{i % 2}:{i}:0", vectors[i], camera=f"cam{i % 2}", frame=i)
    return engine


def measure(faces: int, step_faces: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder, redis_server(Path(folder)) as server:
        store = TimedStore(connect(server.url), "bench")
        engine = filled_engine(store, faces, step_faces)
        result: dict[str, float] = {}
        for name in ("camera", "cluster"):
            if name == "camera":
                command = ForgetFaces(name, camera="cam0")
            else:
                command = ForgetFaces(name, cluster=max(engine.clusters().items(), key=lambda c: c[1].size)[0])
            store.calls = []
            started = time.perf_counter()
            with store.batch():
                outcomes = engine.correct_in_steps(command, offset=(0, 1))
            result[f"{name}_s"] = time.perf_counter() - started
            result[f"{name}_steps"] = len(outcomes)
            result[f"{name}_longest_ms"] = max(store.calls) * 1000
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=20_000)
    parser.add_argument("--steps", type=int, nargs="+", default=[500, 2_000, 0])
    args = parser.parse_args()
    results = {step: measure(args.faces, step) for step in args.steps}
    baseline = results.get(0)
    print(f"{args.faces} faces; forget one camera ({args.faces // 2} faces), then the largest cluster")
    print(f"{'step':>6}{'steps':>7}{'longest ms':>12}{'total s':>9}{'ratio':>7} | {'steps':>6}{'longest ms':>12}")
    for step, r in results.items():
        ratio = r["camera_longest_ms"] / baseline["camera_longest_ms"] if baseline else float("nan")
        print(
            f"{step or 'once':>6}{r['camera_steps']:>7.0f}{r['camera_longest_ms']:>12.1f}{r['camera_s']:>9.2f}"
            f"{ratio:>7.2f} | {r['cluster_steps']:>6.0f}{r['cluster_longest_ms']:>12.1f}"
        )


if __name__ == "__main__":
    main()
