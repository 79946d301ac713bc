import math

import pytest

from clustering.scores import score_clustering


def test_hand_computed_case() -> None:
    # truth a a a b b / predicted 1 1 2 2 2: cells (a,1)=2 (a,2)=1 (b,2)=2
    scores = score_clustering(list("aaabb"), [1, 1, 2, 2, 2])
    assert scores.pairwise_precision == pytest.approx(2 / 4)
    assert scores.pairwise_recall == pytest.approx(2 / 4)
    assert scores.pairwise_f == pytest.approx(0.5)
    assert scores.bcubed_precision == pytest.approx(11 / 15)
    assert scores.bcubed_recall == pytest.approx(11 / 15)
    assert scores.purity == pytest.approx(4 / 5)
    assert scores.rand_index == pytest.approx(6 / 10)
    entropy = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))
    mutual = 0.4 * math.log(0.4 / 0.24) + 0.2 * math.log(0.2 / 0.36) + 0.4 * math.log(0.4 / 0.24)
    assert scores.nmi == pytest.approx(mutual / entropy)
    assert (scores.true_clusters, scores.predicted_clusters, scores.items) == (2, 2, 5)


def test_perfect_clustering_scores_one_whatever_the_label_names() -> None:
    scores = score_clustering(["x", "x", "y", "z"], [7, 7, 3, 9])
    for value in (scores.pairwise_f, scores.bcubed_f, scores.nmi, scores.purity, scores.rand_index):
        assert value == pytest.approx(1.0)


def test_all_singletons_claim_no_wrong_pair_but_miss_every_true_pair() -> None:
    scores = score_clustering(list("aabb"), [0, 1, 2, 3])
    assert scores.pairwise_precision == 1.0
    assert scores.pairwise_recall == 0.0
    assert scores.bcubed_precision == 1.0
    assert scores.bcubed_recall == pytest.approx(0.5)


def test_one_big_cluster() -> None:
    scores = score_clustering(list("aabb"), [0, 0, 0, 0])
    assert scores.pairwise_precision == pytest.approx(2 / 6)
    assert scores.pairwise_recall == 1.0
    assert scores.purity == pytest.approx(0.5)
    assert scores.nmi == pytest.approx(0.0)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="3 true labels but 2"):
        score_clustering("abc", [1, 2])
