"""Smaller arithmetic, weighed (issue 29, item 4): int8 and float16 versions of the built-in detector and
embedder against their float32 originals, on this CPU, with what each costs in accuracy.

The variants are made here, from the registry's files, with onnxruntime's own tools: int8 by static
quantization (QDQ, weights int8 per channel, activations uint8, calibrated on faces and photos of people
kept out of the measure; the graphs are first brought to opset 13, which per-channel quantization needs),
float16 by ``onnxruntime.transformers.float16`` (inputs and outputs kept float32).

- embedder: milliseconds per batch of 32 aligned faces (median of --repeats), the cosine of each face's
  embedding to the float32 one (median and 1st percentile), and the online clustering's BCubed F over the
  faces of --people LFW DevTrain identities (the same engine and defaults as ``facestream eval``);
- detector: milliseconds per batch of 8 frames (the photos letterboxed to 640x640), and the float32 model's
  faces found again (box overlap >= 0.5) over the photos and the scenes of ../shared/data, with the faces it
  did not find.

    uv run python -m bench.arithmetic [--people 300] [--repeats 10]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import version_converter
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from bench.common import DATA, median, require
from clustering.scores import score_clustering
from clustering.settings import ClusteringSettings
from models.align import align_faces
from models.analyzer import FaceAnalyzer
from models.detection import FaceDetector, letterbox
from models.embedder import FaceEmbedder
from models.heads import nchw_blob
from models.session import OrtSessionFactory
from models.settings import ModelSettings, RuntimeSettings
from models.tracker import iou_matrix
from streaming.decode import decode_image
from workers.run.evaluate import labeled_images, online_labels, primary_face

Images = list[NDArray[np.uint8]]
#: Per-channel quantization (DequantizeLinear's axis) needs opset 13.
QUANT_OPSET = 13
#: People whose faces and photos calibrate the int8 versions, kept out of what is measured.
CALIBRATION_PEOPLE = 40


class _Batches:
    """Calibration feeds, as onnxruntime's CalibrationDataReader gives them (``get_next`` until None)."""

    def __init__(self, name: str, blobs: list[NDArray[np.float32]]) -> None:
        self._feeds = iter([{name: blob} for blob in blobs])

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        return next(self._feeds, None)


def int8(source: Path, folder: Path, input_name: str, calibration: list[NDArray[np.float32]]) -> Path:
    model = onnx.load(source)
    if model.opset_import[0].version < QUANT_OPSET:
        model = version_converter.convert_version(model, QUANT_OPSET)
    upgraded, prepared, target = folder / "opset13.onnx", folder / "prepared.onnx", folder / f"{source.stem}.int8.onnx"
    onnx.save(model, upgraded)
    quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(target),
        _Batches(input_name, calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return target


def float16(source: Path, folder: Path) -> Path:
    target = folder / f"{source.stem}.fp16.onnx"
    onnx.save(convert_float_to_float16(onnx.load(source), keep_io_types=True), target)
    return target


def timed(work: Callable[[], object], repeats: int) -> float:
    work()  # the first run allocates
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return median(times) * 1000


def labeled_faces(analyzer: FaceAnalyzer, people: int) -> tuple[list[NDArray[np.uint8]], list[str], Images]:
    """Aligned primary faces of the first ``people`` LFW DevTrain identities with two photos or more, their
    identities, and the photos."""
    images = labeled_images(require(DATA / "lfw_devtrain"))
    counts: dict[str, int] = {}
    for item in images:
        counts[item.identity] = counts.get(item.identity, 0) + 1
    chosen = set(sorted(identity for identity, count in counts.items() if count >= 2)[:people])
    crops, labels, photos = [], [], []
    for item in (i for i in images if i.identity in chosen):
        photo = decode_image(item.path.read_bytes())
        found = analyzer.detector.detect([photo])[0]
        face = primary_face(found, photo.shape[0], photo.shape[1])
        if face is not None:
            crops.append(align_faces(photo, found.landmarks[face : face + 1])[0])
            labels.append(item.identity)
            photos.append(photo)
    return crops, labels, photos


def weigh_embedders(
    paths: dict[str, Path], settings: ModelSettings, faces: NDArray[np.uint8], labels: list[str], repeats: int
) -> None:
    factory = OrtSessionFactory(("CPUExecutionProvider",))
    reference: NDArray[np.float32] | None = None
    print(f"{'embedder':<10}{'ms / 32':>9}{'x fp32':>8}{'cos med':>9}{'cos p1':>8}{'BCubed F':>10}")
    base = 0.0
    for label, path in paths.items():
        embedder = FaceEmbedder(path, factory, settings.embedder)
        ms = timed(functools.partial(embedder.embed, faces[:32]), repeats)
        vectors = embedder.embed(faces)
        reference = vectors if reference is None else reference
        base = base or ms
        cosine = (vectors * reference).sum(axis=1)
        found = online_labels(vectors, ClusteringSettings(), seed=None)
        f = score_clustering(labels, found.tolist()).bcubed_f
        print(
            f"{label:<10}{ms:>9.1f}{ms / base:>8.2f}{np.median(cosine):>9.4f}{np.percentile(cosine, 1):>8.4f}{f:>10.4f}"
        )


def weigh_detectors(paths: dict[str, Path], settings: ModelSettings, photos: Images, repeats: int) -> None:
    factory = OrtSessionFactory(("CPUExecutionProvider",))
    batch = [letterbox(photo, 640, 640).canvas for photo in photos[:8]]
    reference: list[NDArray[np.float32]] | None = None
    print(f"{'detector':<10}{'ms / 8':>9}{'x fp32':>8}{'found again':>12}{'missed':>8}{'extra':>7}")
    base = 0.0
    for label, path in paths.items():
        detector = FaceDetector(path, factory, settings.detector)
        ms = timed(functools.partial(detector.detect, batch), repeats)
        boxes = [d.boxes for photo in photos for d in detector.detect([photo])]
        reference = boxes if reference is None else reference
        base = base or ms
        matched = missed = extra = 0
        for mine, theirs in zip(boxes, reference, strict=True):
            hits = int((iou_matrix(theirs, mine).max(axis=1) >= 0.5).sum()) if len(mine) and len(theirs) else 0
            matched, missed, extra = matched + hits, missed + len(theirs) - hits, extra + len(mine) - hits
        share = matched / max(matched + missed, 1)
        print(f"{label:<10}{ms:>9.1f}{ms / base:>8.2f}{share:>12.2%}{missed:>8}{extra:>7}")


def _embedder_blob(settings: ModelSettings, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
    """The embedder's input, as ``FaceEmbedder`` makes it."""
    embedder = settings.embedder
    return nchw_blob(crops, (embedder.input_mean,) * 3, embedder.input_std, swap_rb=embedder.channel_order == "rgb")


def _detector_blob(detector: FaceDetector, photo: NDArray[np.uint8]) -> NDArray[np.float32]:
    """The detector's input for one photo, as ``FaceDetector.detect`` makes it."""
    height, width = detector.input_hw([photo])
    return detector.head.blob(letterbox(photo, width, height, detector.settings.max_upscale).canvas[None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=300, help="LFW DevTrain identities measured")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    ort.set_default_logger_severity(3)  # quantized graphs warn about their declared output shapes
    settings = ModelSettings(runtime=RuntimeSettings(providers=("CPUExecutionProvider",)))
    analyzer = FaceAnalyzer.from_settings(settings)
    every_crop, every_label, every_photo = labeled_faces(analyzer, CALIBRATION_PEOPLE + args.people)
    calibrating = set(sorted(set(every_label))[:CALIBRATION_PEOPLE])  # kept out of the measure
    calibration_crops = [c for c, label in zip(every_crop, every_label, strict=True) if label in calibrating]
    calibration_photos = [p for p, label in zip(every_photo, every_label, strict=True) if label in calibrating]
    measured = [i for i, label in enumerate(every_label) if label not in calibrating]
    crops, labels = [every_crop[i] for i in measured], [every_label[i] for i in measured]
    photos = [every_photo[i] for i in measured]
    scenes = [decode_image(p.read_bytes()) for p in sorted(require(DATA / "scenes_unlabeled").glob("*.jpg"))]
    faces = np.stack(crops)
    print(f"{len(crops)} faces of {len(set(labels))} LFW DevTrain people, {len(photos) + len(scenes)} photos")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        embedder, detector = analyzer.embedder, analyzer.detector
        embedder_blobs = [_embedder_blob(settings, crop[None]) for crop in calibration_crops]
        detector_blobs = [_detector_blob(detector, photo) for photo in calibration_photos[:60]]
        (folder / "embedder").mkdir()
        (folder / "detector").mkdir()
        embedders = {
            "fp32": embedder.path,
            "int8": int8(embedder.path, folder / "embedder", embedder.input.name, embedder_blobs),
            "fp16": float16(embedder.path, folder / "embedder"),
        }
        detectors = {
            "fp32": detector.path,
            "int8": int8(detector.path, folder / "detector", detector.input.name, detector_blobs),
            "fp16": float16(detector.path, folder / "detector"),
        }
        weigh_embedders(embedders, settings, faces, labels, args.repeats)
        weigh_detectors(detectors, settings, photos[:200] + scenes, args.repeats)


if __name__ == "__main__":
    main()
