"""Corrections that stick: an oracle user corrects the online clustering of LFW DevTrain as the faces stream in.

After each tenth of the stream (faces in a shuffled order, embeddings cached), the oracle makes the most
useful corrections it can see against the true identities: split one other person's faces off a cluster, or
merge the two largest pieces of one person, whichever raises BCubed F most. BCubed F is printed after each
correction and at the end of the stream, with a bound: the same stream without corrections, then the best as
many corrections made at its end by an oracle that knows the final clustering. Every correction is checked
again at each checkpoint and at the end: a regression is a correction some later face, merge or correction
undid (the two sides of a split together again, a merge's clusters apart). Then the cost of one command, in
faces' worth of cluster-stage time, on a 100,000-face synthetic space (bench/clustering.py's faces), per
command type.

    uv run python -m bench.corrections [--embeddings .cache/lfw_devtrain.npz] [--per-checkpoint 2] [--scale 100000]

Targets (issue #10): 0 regressions, BCubed F >= 0.999 after 20 corrections, a command <= 10 faces' worth.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench.clustering import synthetic_faces
from bench.common import DATA, require
from clustering.corrections import Correction, ForgetFaces, LabelCluster, MergeClusters, SplitFaces
from clustering.engine import OnlineRankOrder
from clustering.events import Conflict
from clustering.scores import score_clustering
from clustering.settings import ClusteringSettings
from workers.run.evaluate import embedded_dataset
from workers.settings import Settings

#: A correction to check again later: ("apart", faces of two sides) or ("together", faces of two clusters).
Promise = tuple[str, str, str]


def _bcubed_f(labels: dict[str, int], truth: dict[str, str]) -> float:
    faces = sorted(labels)
    return score_clustering([truth[f] for f in faces], [labels[f] for f in faces]).bcubed_f


def _moves(labels: dict[str, int], truth: dict[str, str]) -> list[tuple[str, list[str], list[int]]]:
    """Every correction of the two kinds the oracle may make: ("split", one other person's faces in a cluster,
    [that cluster]) and ("merge", [], [the largest piece of a person, the next largest])."""
    members: dict[int, list[str]] = {}
    for face, cluster in labels.items():
        members.setdefault(cluster, []).append(face)
    moves: list[tuple[str, list[str], list[int]]] = []
    pieces: dict[str, list[tuple[int, int]]] = {}
    for cluster, faces in members.items():
        people = Counter(truth[face] for face in faces)
        majority, count = people.most_common(1)[0]
        pieces.setdefault(majority, []).append((count, cluster))
        for person in people:
            if person != majority:
                moves.append(("split", [face for face in faces if truth[face] == person], [cluster]))
    for parts in pieces.values():
        if len(parts) >= 2:
            (_, first), (_, second) = sorted(parts, reverse=True)[:2]
            moves.append(("merge", [], [first, second]))
    return moves


def _moved(labels: dict[str, int], move: tuple[str, list[str], list[int]]) -> dict[str, int]:
    kind, faces, clusters = move
    after = dict(labels)
    if kind == "split":
        fresh = max(labels.values()) + 1
        after.update(dict.fromkeys(faces, fresh))
    else:
        after.update({face: clusters[0] for face, cluster in labels.items() if cluster == clusters[1]})
    return after


def _ranked(labels: dict[str, int], truth: dict[str, str]) -> list[tuple[str, list[str], list[int]]]:
    """The moves, the one that raises BCubed F most first (what "most useful" means to a user scoring it)."""
    gains = [(_bcubed_f(_moved(labels, move), truth), move) for move in _moves(labels, truth)]
    return [move for _, move in sorted(gains, key=lambda item: -item[0])]


def _candidates(engine: OnlineRankOrder, truth: dict[str, str], number: int) -> list[tuple[Correction, Promise]]:
    """The corrections the oracle sees now, the most useful first, as commands with what each promises."""
    labels = engine.labels()
    found: list[tuple[Correction, Promise]] = []
    for kind, faces, clusters in _ranked(labels, truth)[:50]:
        if kind == "split":
            kept = next(face for face, cluster in labels.items() if cluster == clusters[0] and face not in faces)
            found.append((SplitFaces(f"oracle-{number}-split-{faces[0]}", tuple(faces)), ("apart", faces[0], kept)))
        else:
            first, second = (next(f for f, c in labels.items() if c == cluster) for cluster in clusters)
            found.append(
                (MergeClusters(f"oracle-{number}-merge-{clusters[0]}", tuple(clusters)), ("together", first, second))
            )
    return found


def best_possible(labels: dict[str, int], truth: dict[str, str], corrections: int) -> float:
    """BCubed F after the ``corrections`` most useful moves, chosen greedily with the final clustering in view:
    a bound for the oracle, which only sees the stream so far and whose later faces can make new mistakes."""
    for _ in range(corrections):
        ranked = _ranked(labels, truth)
        if not ranked:
            break
        labels = _moved(labels, ranked[0])
    return _bcubed_f(labels, truth)


def _kept(engine: OnlineRankOrder, promise: Promise) -> bool:
    kind, one, other = promise
    same = engine.cluster_of(one) == engine.cluster_of(other)
    return same if kind == "together" else not same


def _arrival(embeddings: NDArray[np.float32], identities: list[str], seed: int) -> tuple[list[int], dict[str, str]]:
    order = list(range(len(embeddings)))
    random.Random(seed).shuffle(order)
    return order, {f"lfw:{index}:0": identities[index] for index in order}


def oracle_run(embeddings: NDArray[np.float32], identities: list[str], per_checkpoint: int, seed: int) -> int:
    """Streams the faces with the oracle's corrections; returns how many it made."""
    order, every_truth = _arrival(embeddings, identities, seed)
    engine = OnlineRankOrder(embeddings.shape[1], ClusteringSettings())
    truth: dict[str, str] = {}
    promises: list[Promise] = []
    regressions = corrections = conflicts = 0
    checkpoints = {len(order) * k // 10 for k in range(1, 11)}

    def bcubed_f() -> float:
        return _bcubed_f(engine.labels(), truth)

    print(f"{'faces':>7} {'correction':<44}{'BCubed F':>10}")
    for position, index in enumerate(order, 1):
        face = f"lfw:{index}:0"
        truth[face] = every_truth[face]
        engine.add(face, embeddings[index], camera="lfw", frame=index)
        if position not in checkpoints:
            continue
        broken = [p for p in promises if not _kept(engine, p)]
        regressions += len(broken)
        promises = [p for p in promises if p not in broken]
        print(f"{position:>7} {'(checkpoint)':<44}{bcubed_f():>10.4f}")
        made = 0
        for command, promise in _candidates(engine, truth, corrections):
            if made == per_checkpoint:
                break
            if isinstance(engine.correct(command), Conflict):
                conflicts += 1  # it contradicts an earlier correction: the oracle takes the next
                continue
            made += 1
            corrections += 1
            promises.append(promise)
            what = type(command).__name__ + (
                f" of {len(command.faces)} faces" if isinstance(command, SplitFaces) else ""
            )
            print(f"{position:>7} {f'{corrections}: {what}':<44}{bcubed_f():>10.4f}", flush=True)
    regressions += sum(not _kept(engine, p) for p in promises)
    print(
        f"end of stream: {corrections} corrections ({conflicts} more refused as conflicts), "
        f"BCubed F {bcubed_f():.4f}, regressions {regressions}"
    )
    return corrections


def bound_run(embeddings: NDArray[np.float32], identities: list[str], corrections: int, seed: int) -> None:
    """The same stream without corrections, then the best ``corrections`` moves made at its end."""
    order, truth = _arrival(embeddings, identities, seed)
    engine = OnlineRankOrder(embeddings.shape[1], ClusteringSettings())
    for index in order:
        engine.add(f"lfw:{index}:0", embeddings[index], camera="lfw", frame=index)
    labels = engine.labels()
    print(
        f"without corrections: BCubed F {_bcubed_f(labels, truth):.4f}; the best {corrections} corrections made "
        f"at the end, knowing the final clustering: {best_possible(labels, truth, corrections):.4f}"
    )


def command_cost(scale: int) -> None:
    """Seconds of one command of each type against the mean seconds of one face, on ``scale`` faces.

    The mean, not the median: faces are clustered as the worker does (batches of 256 announced to the engine),
    and one face in each insert block pays for inserting it into the index, which is part of every face's
    cost."""
    faces = synthetic_faces(scale)
    engine = OnlineRankOrder(faces.shape[1], ClusteringSettings())
    timed_from = max(scale // 256 - 40, 0) * 256  # the mean over the last 40 batches
    started = time.perf_counter()
    for first in range(0, scale, 256):
        if first == timed_from:
            started = time.perf_counter()
        last = min(first + 256, scale)
        engine.expect({f"s:{i}:0": faces[i] for i in range(first, last)})
        for i in range(first, last):
            engine.add(f"s:{i}:0", faces[i], camera="s", frame=i)
    face_s = (time.perf_counter() - started) / (scale - timed_from)
    labels = engine.labels()
    sizes = Counter(labels.values())
    (big, _), (other, _) = sizes.most_common(2)
    members = [face for face, cluster in labels.items() if cluster == big]
    commands: list[Correction] = [
        LabelCluster("label", big, "someone"),
        SplitFaces("split", tuple(members[: len(members) // 2])),
        MergeClusters("merge", (big, other)),
        ForgetFaces("forget", faces=(members[-1],)),
    ]
    print(f"\ncommand cost at {scale} faces (one face: mean {face_s * 1000:.2f} ms of engine time)")
    for command in commands:
        started = time.perf_counter()
        engine.correct(command)
        seconds = time.perf_counter() - started
        print(f"  {type(command).__name__:<14}{seconds * 1000:>9.2f} ms = {seconds / face_s:>7.1f} faces")
    print("target: <= 10 faces' worth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DATA / "lfw_devtrain")
    parser.add_argument(
        "--embeddings", type=Path, default=Path(".cache/lfw_devtrain.npz"), help="cache (made if absent)"
    )
    parser.add_argument("--per-checkpoint", type=int, default=2, help="corrections after each tenth")
    parser.add_argument("--seed", type=int, default=0, help="arrival order")
    parser.add_argument("--scale", type=int, default=100_000, help="faces of the command-cost run (0: none)")
    args = parser.parse_args()
    embedded, _ = embedded_dataset(require(args.dataset), Settings(), args.embeddings)
    made = oracle_run(embedded.embeddings, embedded.face_labels, args.per_checkpoint, args.seed)
    bound_run(embedded.embeddings, embedded.face_labels, made, args.seed)
    if args.scale:
        command_cost(args.scale)


if __name__ == "__main__":
    main()
