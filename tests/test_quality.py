import numpy as np
import pytest

from models.align import ARCFACE_TEMPLATE
from models.quality import Rejection, assess, sharpness, yaw_proxy
from models.settings import QualitySettings


def test_yaw_proxy_is_zero_for_the_frontal_template_and_grows_as_the_nose_moves() -> None:
    assert yaw_proxy(ARCFACE_TEMPLATE) < 0.05
    turned = ARCFACE_TEMPLATE.copy()
    turned[2, 0] = turned[1, 0]  # nose under the right eye
    assert yaw_proxy(turned) == pytest.approx(1.0, abs=0.02)
    profile = ARCFACE_TEMPLATE.copy()
    profile[2, 0] = turned[1, 0] + 40
    assert yaw_proxy(profile) > 3


def test_yaw_proxy_ignores_roll() -> None:
    angle = 0.5
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert yaw_proxy(ARCFACE_TEMPLATE @ rotation.T) == pytest.approx(yaw_proxy(ARCFACE_TEMPLATE))


def test_flat_crops_are_blurry_and_textured_ones_sharp() -> None:
    flat = np.full((112, 112, 3), 90, np.uint8)
    noisy = np.random.default_rng(0).integers(0, 255, size=(112, 112, 3), dtype=np.uint8)
    assert sharpness(flat) == 0.0
    assert sharpness(noisy) > 1000


@pytest.mark.parametrize(
    ("box", "score", "nose_shift", "texture", "reason"),
    [
        ((0, 0, 10, 10), 0.9, 0, True, Rejection.TOO_SMALL),
        ((0, 0, 80, 80), 0.3, 0, True, Rejection.LOW_SCORE),
        ((0, 0, 80, 80), 0.9, 80, True, Rejection.PROFILE),
        ((0, 0, 80, 80), 0.9, 0, False, Rejection.BLURRY),
        ((0, 0, 80, 80), 0.9, 0, True, None),
    ],
)
def test_each_rule_names_its_reason(
    box: tuple[int, ...], score: float, nose_shift: float, texture: bool, reason: Rejection | None
) -> None:
    landmarks = ARCFACE_TEMPLATE.copy()
    landmarks[2, 0] += nose_shift
    crop = (
        np.random.default_rng(0).integers(0, 255, size=(112, 112, 3), dtype=np.uint8)
        if texture
        else np.zeros((112, 112, 3), np.uint8)
    )
    settings = QualitySettings(min_score=0.5, max_yaw=3.0, min_face_size=20, min_sharpness=6)
    report = assess(np.array(box, np.float32), score, landmarks, crop, settings)
    assert report.rejection == reason
    assert report.accepted == (reason is None)
