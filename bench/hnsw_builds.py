"""HNSW inserts and queries with hnswlib built for different x86-64 instruction sets, against the build installed.

hnswlib compiles from source; its distance functions use the widest vector instructions the compiler is
allowed (README, "hnswlib's instruction set"). Each level is built into a temporary folder with
``uv pip install --target`` (``CXXFLAGS=-march=<level>``; nothing cached, since the cache does not key on
flags), then each build does the engine's index work in a process of its own, in turn, ``--rounds`` times: the
bench's synthetic faces inserted in blocks of ``index.insert_block`` on ``--threads`` cores through
clustering/index.py with the default settings, each block queried first for its ``direct_search`` nearest
faces, as the engine does.
Medians, and ratios against the installed build of the same run.

    uv run python -m bench.hnsw_builds [--faces 100000] [--levels x86-64-v3 native] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from bench.common import median


def build(level: str, folder: Path) -> Path:
    """The installed hnswlib version compiled for ``level`` ("native": this CPU) into ``folder``."""
    # g++ reads CXXFLAGS; HNSWLIB_NO_NATIVE keeps hnswlib's own -march=native out of the other levels.
    env = {**os.environ, "HNSWLIB_NO_NATIVE": "1", "CXXFLAGS": f"-march={level}"}
    wanted = f"hnswlib=={version('hnswlib')}"
    command = ["uv", "pip", "install", "--quiet", "--no-cache", "--no-deps", "--target", str(folder), wanted]
    subprocess.run(command, env=env, check=True)
    return folder


def work(faces: int, threads: int) -> dict[str, float]:
    """Seconds of inserting and of querying ``faces`` synthetic faces, block by block."""
    # Imported here: hnswlib is the build on this process's path.
    from bench.clustering import DIM, synthetic_faces  # noqa: PLC0415
    from clustering.index import HnswIndex  # noqa: PLC0415
    from clustering.settings import ClusteringSettings  # noqa: PLC0415

    settings = ClusteringSettings()
    block_size, neighbours = settings.index.insert_block, settings.rank_order.direct_search
    vectors = synthetic_faces(faces)
    index = HnswIndex(DIM, settings.index)
    inserting = querying = 0.0
    for first in range(0, faces, block_size):
        block = vectors[first : first + block_size]
        started = time.perf_counter()
        index.query_many(block, neighbours, threads)
        querying += time.perf_counter() - started
        started = time.perf_counter()
        index.add_all(first, block, threads)
        inserting += time.perf_counter() - started
    return {"insert_s": inserting, "query_s": querying}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--levels", nargs="+", default=["x86-64-v3", "native"], help="-march values, or native")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="the cores of an insert or query call")
    parser.add_argument("--work", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        print(json.dumps(work(args.work, args.threads)))
        return
    with tempfile.TemporaryDirectory(prefix="facestream-hnsw-builds-") as scratch:
        paths = {"installed": ""} | {level: str(build(level, Path(scratch) / level)) for level in args.levels}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, path in paths.items():  # in turn, so that the machine's noise falls on every build
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (path, os.getcwd()) if p)}
                command = [sys.executable, "-m", "bench.hnsw_builds", "--work", str(args.faces)]
                output = subprocess.run(
                    [*command, "--threads", str(args.threads)], env=env, check=True, capture_output=True, text=True
                )
                runs[name].append(json.loads(output.stdout.strip().splitlines()[-1]))
    print(f"{args.faces} faces, {args.threads} threads, medians of {args.rounds}")
    print(f"{'build':<12}{'insert s':>10}{'query s':>10}{'total s':>10}{'x installed':>13}")
    base = median([r["insert_s"] + r["query_s"] for r in runs["installed"]])
    for name, results in runs.items():
        insert, query = median([r["insert_s"] for r in results]), median([r["query_s"] for r in results])
        total = median([r["insert_s"] + r["query_s"] for r in results])
        print(f"{name:<12}{insert:>10.1f}{query:>10.1f}{total:>10.1f}{base / total:>13.2f}")


if __name__ == "__main__":
    main()
