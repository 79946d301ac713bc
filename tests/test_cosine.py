import numpy as np

from clustering.cosine import OnlineCosineClustering, cosine_components
from clustering.metrics import score_clustering


def _unit(rows: np.ndarray) -> np.ndarray:
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def _identities(rng: np.random.Generator, people: int, per_person: int, noise: float) -> tuple[np.ndarray, list[int]]:
    centres = _unit(rng.normal(size=(people, 64)))
    vectors = np.repeat(centres, per_person, axis=0) + rng.normal(scale=noise, size=(people * per_person, 64))
    return _unit(vectors), [i // per_person for i in range(people * per_person)]


def test_online_equals_batch_components_in_any_order() -> None:
    rng = np.random.default_rng(1)
    vectors, truth = _identities(rng, 30, 5, 0.04)
    batch = cosine_components(vectors, 0.5, block=17)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(vectors))
        online = OnlineCosineClustering(0.5, 64)
        for i in order:
            online.add(str(i), vectors[i])
        labels = [online.cluster_of(str(i)) for i in range(len(vectors))]
        assert score_clustering(batch.tolist(), labels).rand_index == 1.0
    assert score_clustering(truth, batch.tolist()).pairwise_f == 1.0


def test_merge_keeps_the_oldest_cluster_and_reports_the_absorbed() -> None:
    online = OnlineCosineClustering(0.9, 2)
    a = online.add("a", np.array([1.0, 0.0], np.float32))
    b = online.add("b", np.array([0.0, 1.0], np.float32))
    bridge = online.add("c", _unit(np.array([[1.0, 1.0]]))[0] * 1.0)
    assert (a.cluster_id, b.cluster_id) == (0, 1)
    assert bridge.merges == ()  # 0.707 < 0.9: no link
    online.threshold = 0.7
    joined = online.add("d", _unit(np.array([[1.0, 1.0]]))[0])
    assert joined.cluster_id == 0
    assert joined.merges[0].survivor == 0
    assert set(joined.merges[0].absorbed) == {1, 2}
    assert online.cluster_count == 1


def test_adding_a_face_again_changes_nothing() -> None:
    online = OnlineCosineClustering(0.5, 2)
    first = online.add("a", np.array([1.0, 0.0], np.float32))
    again = online.add("a", np.array([0.0, 1.0], np.float32))
    assert again.cluster_id == first.cluster_id
    assert len(online) == 1
