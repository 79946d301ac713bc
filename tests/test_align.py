import numpy as np
import pytest

from models.align import ARCFACE_TEMPLATE, align_face, arcface_matrix, similarity_transform


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points @ matrix[:, :2].T + matrix[:, 2])


def test_recovers_a_known_similarity() -> None:
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.random.default_rng(0).uniform(0, 100, size=(5, 2))
    dst = scale * src @ rotation.T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
    np.testing.assert_allclose(_apply(matrix, src), dst, atol=1e-9)


def test_never_reflects() -> None:
    src = ARCFACE_TEMPLATE.copy()
    mirrored = src * [-1, 1]
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_template_landmarks_map_onto_themselves() -> None:
    np.testing.assert_allclose(arcface_matrix(ARCFACE_TEMPLATE), [[1, 0, 0], [0, 1, 0]], atol=1e-9)


def test_aligned_crop_puts_landmarks_on_the_template() -> None:
    # Landmarks of a face twice as large, shifted, in a 400x400 image with a bright dot on each landmark.
    landmarks = ARCFACE_TEMPLATE * 2 + [100, 80]
    image = np.zeros((400, 400, 3), np.uint8)
    for x, y in landmarks.round().astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    crop = align_face(image, landmarks)
    assert crop.shape == (112, 112, 3)
    for x, y in ARCFACE_TEMPLATE.round().astype(int):
        assert crop[y, x].max() > 100


def test_outside_the_image_is_zero() -> None:
    image = np.full((60, 60, 3), 200, np.uint8)
    crop = align_face(image, ARCFACE_TEMPLATE + np.array([40, 40]))  # face partly off the image's right and bottom
    assert crop[-1, -1].tolist() == [0, 0, 0]
    assert crop[0, 0].tolist() == [200, 200, 200]


def test_refuses_mismatched_points() -> None:
    with pytest.raises(ValueError, match="matching"):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))
