import numpy as np
import pytest

from models.analyzer import FaceAnalyzer
from models.settings import ModelSettings
from tests.conftest import data_dir
from workers.run.evaluate import embed_dataset, labeled_images
from workers.settings import Settings


@pytest.mark.parametrize("dataset", ["dlib_johns", "faceapi_bbt"])
def test_same_person_is_more_similar_than_different_people(dataset: str, analyzer: FaceAnalyzer) -> None:
    images = labeled_images(data_dir(dataset))
    embedded = embed_dataset(images, analyzer, Settings(), progress=False)
    assert embedded.has_face.mean() > 0.9
    vectors, labels = embedded.embeddings, np.array(embedded.face_labels)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    genuine, impostor = similarity[same & off_diagonal], similarity[~same]
    assert genuine.mean() > impostor.mean() + 0.3
    # Rank-1: each face's nearest other face is the same person, for nearly all faces.
    np.fill_diagonal(similarity, -2)
    assert (labels[similarity.argmax(axis=1)] == labels).mean() > 0.9


def test_embeddings_are_batched_without_changing_them(analyzer: FaceAnalyzer) -> None:
    crops = np.random.default_rng(0).integers(0, 255, size=(5, 112, 112, 3), dtype=np.uint8)
    together = analyzer.embedder.embed(crops)
    alone = np.concatenate([analyzer.embedder.embed(crops[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(together, alone, atol=1e-4)
    assert together.shape == (5, 512)


def test_a_flipped_embedding_is_the_same_for_a_face_and_its_mirror(
    cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    flip = cpu_models.model_copy(update={"embedder": cpu_models.embedder.model_copy(update={"flip": True})})
    flipping = FaceAnalyzer.from_settings(flip).embedder
    crops = np.random.default_rng(1).integers(0, 255, size=(3, 112, 112, 3), dtype=np.uint8)
    both = flipping.embed(crops)
    np.testing.assert_allclose(both, flipping.embed(crops[:, :, ::-1]), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(both, analyzer.embedder.embed(crops), atol=1e-3)  # not the plain embedding
