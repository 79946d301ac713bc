"""How far apart are two templates of one person, and of two people? The data behind ``template_link``.

From an embeddings cache of a labeled folder (``facestream eval DIR --embeddings FILE`` writes one), for n
photos a template: each person with 2n photos or more gives one pair of disjoint templates (same person);
one template per person with n photos or more, every two people give an impostor pair. Printed per n: the
same-person pairs' 1st, 5th and 10th percentiles and median, the impostor pairs' 1e-3, 1e-4 and 1e-5 upper
quantiles and maximum, and at each threshold the share of same-person pairs that reach it and of impostor
pairs that do (labeled folders hold a few mislabeled or duplicate photos: the maximum shows them).

    uv run python -m bench.templates lfw.npz [--sizes 1 2 3 5] [--thresholds 0.45 0.5 0.55]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from clustering.joins import unit_mean
from workers.run.evaluate import EmbeddedSet


def pairs(
    embeddings: NDArray[np.float32], labels: NDArray[np.str_], n: int, seed: int = 0
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Cosines of same-person and of impostor template pairs of ``n`` photos each."""
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(labels, return_inverse=True)
    people = [np.flatnonzero(inverse == i) for i in range(inverse.max() + 1)]
    ones = [1.0] * n

    def template(rows: NDArray[np.intp]) -> NDArray[np.float32]:
        return unit_mean(embeddings[rows], ones)

    genuine = []
    for rows in people:
        if len(rows) >= 2 * n:
            shuffled = rng.permutation(rows)
            genuine.append(float(template(shuffled[:n]) @ template(shuffled[n : 2 * n])))
    templates = np.stack([template(rng.permutation(rows)[:n]) for rows in people if len(rows) >= n])
    upper = np.triu_indices(len(templates), 1)
    return np.asarray(genuine, np.float32), (templates @ templates.T)[upper].astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("embeddings", type=Path, help="an embeddings cache written by facestream eval")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3, 5])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.40, 0.45, 0.50, 0.55])
    args = parser.parse_args()
    cached = EmbeddedSet.load(args.embeddings)
    labels = np.asarray(cached.face_labels)
    embeddings = cached.embeddings / np.linalg.norm(cached.embeddings, axis=1, keepdims=True)
    print(f"{args.embeddings}: {len(labels)} faces of {len(set(labels))} people")
    print("   n  same pairs    p1    p5   p10   med | impostor pairs  1e-3  1e-4  1e-5   max")
    for n in args.sizes:
        genuine, impostor = pairs(embeddings, labels, n)
        low = np.quantile(genuine, [0.01, 0.05, 0.10, 0.5])
        high = np.quantile(impostor, [1 - 1e-3, 1 - 1e-4, 1 - 1e-5])
        print(
            f"{n:4d} {len(genuine):11d} {low[0]:5.3f} {low[1]:5.3f} {low[2]:5.3f} {low[3]:5.3f} |"
            f" {len(impostor):14d} {high[0]:5.3f} {high[1]:5.3f} {high[2]:5.3f} {impostor.max():5.3f}"
        )
        for threshold in args.thresholds:
            print(
                f"       at {threshold:.2f}: same person reach {np.mean(genuine >= threshold):.3f},"
                f" impostors {np.mean(impostor >= threshold):.1e}"
            )


if __name__ == "__main__":
    main()
