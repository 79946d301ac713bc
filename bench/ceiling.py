"""How well can any clustering do with these embeddings? An upper mark for the online clustering's BCubed F.

From an embeddings cache of a labeled folder (``facestream eval DIR --embeddings FILE`` writes one), offline
agglomerative clustering (scipy) of every face at once, with single, average and complete linkage over cosine
distance, each cut at the threshold that scores best *against the labels themselves* (swept from
--low to --high): what a method that sees every face before deciding, and is told the best threshold, reaches.
The online clustering sees faces one at a time and never learns the labels, so its figure sits below these.

    uv run python -m bench.ceiling lfw.npz [--low 0.30] [--high 0.90] [--step 0.02]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from clustering.scores import ClusteringScores, score_clustering
from workers.run.evaluate import EmbeddedSet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache", type=Path)
    parser.add_argument("--low", type=float, default=0.30, help="lowest cosine distance cut")
    parser.add_argument("--high", type=float, default=0.90, help="highest cosine distance cut")
    parser.add_argument("--step", type=float, default=0.02)
    args = parser.parse_args()
    embedded = EmbeddedSet.load(args.cache)
    labels = embedded.face_labels
    distances = pdist(embedded.embeddings, "cosine")
    print(f"{len(labels)} faces of {len(set(labels))} people ({args.cache.name})")
    print(f"{'linkage':<10}{'best cut':>9}{'(cosine)':>9}{'clusters':>9}{'BCubed P':>9}{'R':>8}{'F':>8}")
    for method in ("single", "average", "complete"):
        tree = linkage(distances, method)
        best: tuple[float, ClusteringScores, int] | None = None
        for cut in np.arange(args.low, args.high + 1e-9, args.step):
            found = fcluster(tree, cut, "distance")
            scores = score_clustering(labels, found.tolist())
            if best is None or scores.bcubed_f > best[1].bcubed_f:
                best = (float(cut), scores, int(found.max()))
        if best is not None:
            cut, scores, clusters = best
            print(
                f"{method:<10}{cut:>9.2f}{1 - cut:>9.2f}{clusters:>9}"
                f"{scores.bcubed_precision:>9.4f}{scores.bcubed_recall:>8.4f}{scores.bcubed_f:>8.4f}"
            )


if __name__ == "__main__":
    main()
