"""Quality of a clustering against true labels: pairwise, BCubed, NMI, purity and Rand index.

Every measure is computed from the contingency table, so it costs O(n) in the number of items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class ClusteringScores:
    items: int
    true_clusters: int
    predicted_clusters: int
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f: float
    nmi: float
    purity: float
    rand_index: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _f(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _pairs(counts: NDArray[np.int64]) -> float:
    return float((counts * (counts - 1) // 2).sum())


def _entropy(counts: NDArray[np.int64], total: int) -> float:
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def score_clustering(truth: Sequence[object], predicted: Sequence[object]) -> ClusteringScores:
    """Scores of ``predicted`` cluster labels against ``truth`` labels, item by item."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predicted labels")
    n = len(truth)
    if n == 0:
        raise ValueError("cannot score an empty clustering")
    _, t = np.unique(np.asarray([str(x) for x in truth]), return_inverse=True)
    _, p = np.unique(np.asarray([str(x) for x in predicted]), return_inverse=True)
    cells, cell_sizes = np.unique(np.stack([t, p]), axis=1, return_counts=True)
    true_sizes = np.bincount(t).astype(np.int64)
    pred_sizes = np.bincount(p).astype(np.int64)
    cell_sizes = cell_sizes.astype(np.int64)

    same_both = _pairs(cell_sizes)
    same_pred, same_true = _pairs(pred_sizes), _pairs(true_sizes)
    # No predicted pairs means no wrong pair was claimed; no true pairs means none could be missed.
    pw_precision = same_both / same_pred if same_pred else 1.0
    pw_recall = same_both / same_true if same_true else 1.0

    squares = cell_sizes.astype(np.float64) ** 2
    bc_precision = float((squares / pred_sizes[cells[1]]).sum() / n)
    bc_recall = float((squares / true_sizes[cells[0]]).sum() / n)

    h_true, h_pred = _entropy(true_sizes, n), _entropy(pred_sizes, n)
    joint = cell_sizes / n
    mutual = float((joint * np.log(joint / (true_sizes[cells[0]] / n * pred_sizes[cells[1]] / n))).sum())
    mean_entropy = (h_true + h_pred) / 2
    nmi = 1.0 if mean_entropy == 0 else max(0.0, min(1.0, mutual / mean_entropy))

    majority = np.zeros(len(pred_sizes), np.int64)
    np.maximum.at(majority, cells[1], cell_sizes)
    purity = float(majority.sum() / n)

    all_pairs = n * (n - 1) / 2
    agreements = all_pairs - same_pred - same_true + 2 * same_both
    rand = 1.0 if all_pairs == 0 else agreements / all_pairs

    return ClusteringScores(
        items=n,
        true_clusters=len(true_sizes),
        predicted_clusters=len(pred_sizes),
        pairwise_precision=pw_precision,
        pairwise_recall=pw_recall,
        pairwise_f=_f(pw_precision, pw_recall),
        bcubed_precision=bc_precision,
        bcubed_recall=bc_recall,
        bcubed_f=_f(bc_precision, bc_recall),
        nmi=nmi,
        purity=purity,
        rand_index=rand,
    )
