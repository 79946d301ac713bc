"""Recall and latency of the built-in detectors on the labeled data, to choose the default by figures.

Recall is per image on identity folders (every image shows its person, so an image without a face found is
a miss); on the multi-face scenes it is faces found against faces counted by eye; on the Hamilton clip it
is the share of frames with a face. Latency is the median of one 640x640 detector call on a video frame.

    uv run python -m bench.detectors [--lfw-images 600] [--repeats 20]
"""

from __future__ import annotations

import argparse
import random
import time

from bench.common import DATA, SCENE_FACES, median, require, video_frames
from models.analyzer import FaceAnalyzer
from models.settings import DetectorSettings, ModelSettings, RuntimeSettings
from streaming.decode import decode_image
from streaming.sources import folder_images

SETS = ("deepface_tests", "face_recognition_examples", "dlib_johns", "faceapi_bbt", "lfw_devtrain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw-images", type=int, default=600, help="random LFW images to try (seed 0)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--detectors", nargs="+", default=["scrfd-500m", "retinaface-mnet025"])
    args = parser.parse_args()
    images = {}
    for name in SETS:
        files = folder_images(require(DATA / name))
        if name == "lfw_devtrain":
            files = random.Random(0).sample(files, min(args.lfw_images, len(files)))
        images[name] = [decode_image(f.read_bytes()) for f in files]
    scenes = [decode_image((require(DATA / "scenes_unlabeled") / n).read_bytes()) for n in SCENE_FACES]
    frames = video_frames(DATA / "videos" / "short_hamilton_clip.mp4")

    header = "".join(f"{n[:14]:>16}" for n in SETS)
    print(f"{'detector':<20}{header}{'scenes':>10}{'clip frames':>13}{'clip faces':>12}{'ms/frame':>10}")
    for detector in args.detectors:
        settings = ModelSettings(
            runtime=RuntimeSettings(providers=("CPUExecutionProvider",)), detector=DetectorSettings(model=detector)
        )
        model = FaceAnalyzer.from_settings(settings).detector
        cells = []
        for name in SETS:
            found = sum(len(model.detect([image])[0]) > 0 for image in images[name])
            cells.append(f"{found / len(images[name]):>16.3f}")
        scene_found = sum(min(len(model.detect([s])[0]), n) for s, n in zip(scenes, SCENE_FACES.values(), strict=True))
        clip: list[int] = []
        for i in range(0, len(frames), 8):
            clip += [len(found) for found in model.detect(frames[i : i + 8])]
        with_faces = sum(n > 0 for n in clip) / len(clip)
        timings = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.detect([frames[100]])
            timings.append((time.perf_counter() - start) * 1000)
        print(
            f"{detector:<20}{''.join(cells)}{scene_found / sum(SCENE_FACES.values()):>10.3f}"
            f"{with_faces:>13.3f}{sum(clip):>12}{median(timings):>10.1f}"
        )


if __name__ == "__main__":
    main()
