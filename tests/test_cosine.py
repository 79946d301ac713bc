import numpy as np

from clustering.cosine import cosine_components
from clustering.scores import score_clustering


def _unit(rows: np.ndarray) -> np.ndarray:
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


def test_components_of_the_threshold_graph_whatever_the_block_size() -> None:
    rng = np.random.default_rng(1)
    centres = _unit(rng.normal(size=(30, 64)))
    vectors = _unit(np.repeat(centres, 5, axis=0) + rng.normal(scale=0.04, size=(150, 64)))
    truth = [i // 5 for i in range(150)]
    whole = cosine_components(vectors, 0.5)
    assert score_clustering(truth, whole.tolist()).pairwise_f == 1.0
    assert cosine_components(vectors, 0.5, block=17).tolist() == whole.tolist()


def test_a_chain_links_faces_that_are_not_similar_themselves() -> None:
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    bridge = _unit(np.array([[1.0, 1.0]]))[0]
    labels = cosine_components(np.stack([a, b, bridge]), 0.7)
    assert len(set(labels.tolist())) == 1
    assert len(set(cosine_components(np.stack([a, b]), 0.7).tolist())) == 2
