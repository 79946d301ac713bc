from pathlib import Path

import numpy as np
import pytest

from bench.common import SCENE_FACES
from models.analyzer import FaceAnalyzer
from models.detection import FaceDetector, letterbox, nms
from models.errors import ModelError
from models.heads import DistanceHead, nchw_blob, select_head
from models.registry import REGISTRY, builtin_path
from models.session import OrtSessionFactory
from models.settings import DetectorSettings, ModelSettings
from tests.conftest import data_dir, read_bgr


class _Arg:
    def __init__(self, name: str, shape: list[int | str]) -> None:
        self.name, self.shape = name, shape


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.8, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2]


def test_letterbox_keeps_the_aspect_ratio() -> None:
    image = np.full((100, 200, 3), 255, np.uint8)
    assert letterbox(image, 640, 640).scale == 1.0  # padded, not enlarged, by default
    boxed = letterbox(image, 640, 640, max_upscale=4.0)
    assert boxed.scale == pytest.approx(3.2)
    assert boxed.canvas.shape == (640, 640, 3)
    assert boxed.canvas[319, 639].tolist() == [255, 255, 255]
    assert boxed.canvas[321, 0].tolist() == [0, 0, 0]


def test_strides_and_anchors_are_read_from_output_rows() -> None:
    assert DistanceHead.layout((12800, 3200, 800), 640, 640) == ((8, 2), (16, 2), (32, 2))
    assert DistanceHead.layout((6400, 1600, 400, 100, 25), 640, 640) == (
        (8, 1),
        (16, 1),
        (32, 1),
        (64, 1),
        (128, 1),
    )
    with pytest.raises(ModelError, match="cannot infer"):
        DistanceHead.layout((1000,), 640, 640)


def test_unknown_layouts_are_refused_with_their_outputs() -> None:
    with pytest.raises(ModelError, match=r"logits\[1, 1000\]"):
        select_head("classifier.onnx", [_Arg("logits", [1, 1000])])
    with pytest.raises(ModelError, match="no keypoint outputs"):
        select_head("nokps.onnx", [_Arg(f"o{i}", ["?", "?", w]) for i, w in enumerate([1, 1, 1, 4, 4, 4])])


@pytest.mark.parametrize("model", ["scrfd-500m", "retinaface-mnet025"])
def test_faces_counted_on_scenes(model: str, cpu_models: ModelSettings) -> None:
    scenes = data_dir("scenes_unlabeled")
    analyzer = FaceAnalyzer.from_settings(cpu_models.model_copy(update={"detector": DetectorSettings(model=model)}))
    for name, expected in SCENE_FACES.items():
        image = read_bgr(scenes / name)
        found = analyzer.detector.detect([image])[0]
        assert len(found) == expected, name
        margin = (found.boxes[:, None, 2:] - found.boxes[:, None, :2]) * 0.25
        near = (found.landmarks >= found.boxes[:, None, :2] - margin) & (
            found.landmarks <= found.boxes[:, None, 2:] + margin
        )
        assert near.all(), f"{name}: landmarks far from their boxes"


def test_a_batch_finds_what_single_frames_find(analyzer: FaceAnalyzer) -> None:
    scenes = data_dir("scenes_unlabeled")
    images = [read_bgr(scenes / n) for n in ("faceapi_bbt1.jpg", "frec_two_people.jpg", "insightface_t1.jpg")]
    batched = analyzer.detector.detect(images)
    for image, together in zip(images, batched, strict=True):
        alone = analyzer.detector.detect([image])[0]
        np.testing.assert_allclose(together.boxes, alone.boxes, atol=0.5)


def test_a_user_file_in_either_layout_is_decoded(tmp_path: Path) -> None:
    # A user points at a file: the graph alone decides how it is decoded.
    image = read_bgr(data_dir("scenes_unlabeled") / "frec_two_people.jpg")
    for spec_id in ("scrfd-500m", "retinaface-mnet025"):
        path = tmp_path / f"user-{spec_id}.onnx"
        path.write_bytes(builtin_path(REGISTRY[spec_id], tmp_path).read_bytes())
        detector = FaceDetector(path, OrtSessionFactory(("CPUExecutionProvider",)), DetectorSettings(model=str(path)))
        assert len(detector.detect([image])[0]) == 2


def test_blank_frames_have_no_faces(analyzer: FaceAnalyzer) -> None:
    found = analyzer.detector.detect([np.zeros((480, 640, 3), np.uint8), np.full((50, 3000, 3), 128, np.uint8)])
    assert [len(f) for f in found] == [0, 0]


@pytest.mark.parametrize(("mean", "std", "swap_rb"), [((104.0, 117.0, 123.0), 1.0, False), ((127.5,) * 3, 128.0, True)])
def test_the_network_input_is_the_batch_normalised_channel_by_channel(
    mean: tuple[float, float, float], std: float, swap_rb: bool
) -> None:
    batch = np.random.default_rng(0).integers(0, 256, (3, 24, 40, 3), dtype=np.uint8)
    pixels = batch[..., ::-1] if swap_rb else batch
    expected = np.ascontiguousarray(
        ((pixels.astype(np.float32) - np.asarray(mean, np.float32)) / std).transpose(0, 3, 1, 2)
    )
    blob = nchw_blob(batch, mean, std, swap_rb)
    assert blob.flags.c_contiguous
    np.testing.assert_array_equal(blob, expected)
