"""The networks' input, made three ways, on the batches the pipeline makes (issue 29, item 2).

- "convert+transpose": what the project did first: the whole NHWC batch to float32, minus the mean, over the
  std, transposed to NCHW and made contiguous;
- "nchw_blob": what it does now (``models.heads.nchw_blob``): each channel written straight into its place;
- "blobFromImages": OpenCV's native call (``cv2.dnn.blobFromImages``), which does the same in C++.

Batches: 8 letterboxed 640x384 frames (SCRFD's input for 640x360 frames, the default batch) and 32 aligned
112x112 faces (the embedder's). Medians of --repeats timings of each, and each method against nchw_blob in
the same process; the three must agree (the largest difference is printed).

    uv run python -m bench.network_inputs [--repeats 50]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import cv2
import numpy as np
from numpy.typing import NDArray

from bench.common import median
from models.heads import nchw_blob

Batch = NDArray[np.uint8]
Blob = NDArray[np.float32]
MEAN, STD = (127.5, 127.5, 127.5), 128.0


def convert_transpose(batch: Batch) -> Blob:
    rgb = batch[..., ::-1].astype(np.float32)
    return np.ascontiguousarray(((rgb - np.float32(MEAN[0])) / np.float32(STD)).transpose(0, 3, 1, 2))


def channel_by_channel(batch: Batch) -> Blob:
    return nchw_blob(batch, MEAN, STD, swap_rb=True)


def opencv_blob(batch: Batch) -> Blob:
    blob = cv2.dnn.blobFromImages(list(batch), 1.0 / STD, (0, 0), MEAN, swapRB=True, crop=False)
    return np.asarray(blob, dtype=np.float32)


METHODS: dict[str, Callable[[Batch], Blob]] = {
    "convert+transpose": convert_transpose,
    "nchw_blob": channel_by_channel,
    "blobFromImages": opencv_blob,
}


def timed(method: Callable[[Batch], Blob], batch: Batch, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        method(batch)
        times.append(time.perf_counter() - started)
    return median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    batches = {
        "detector: 8 x 640x384": rng.integers(0, 256, (8, 384, 640, 3), dtype=np.uint8),
        "embedder: 32 x 112x112": rng.integers(0, 256, (32, 112, 112, 3), dtype=np.uint8),
    }
    print(f"{'batch':<24}{'method':<20}{'ms':>8}{'x nchw_blob':>13}{'max diff':>10}")
    for name, batch in batches.items():
        reference = channel_by_channel(batch)
        times = {label: timed(method, batch, args.repeats) for label, method in METHODS.items()}
        for label, method in METHODS.items():
            difference = float(np.abs(method(batch) - reference).max())
            ratio = times[label] / times["nchw_blob"]
            print(f"{name:<24}{label:<20}{times[label]:>8.2f}{ratio:>13.2f}{difference:>10.1e}")


if __name__ == "__main__":
    main()
