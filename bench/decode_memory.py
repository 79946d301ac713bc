"""Peak memory of decoding the worst images a frames topic can carry, against the float64 path it replaced.

Each decode runs in a fresh Python process, which resets its peak resident size after the imports and reading
the file, and reads it after the decode: a 7000x7000 16-bit grey PNG (95 KB on the wire), a 7000x7000 JPEG of
one colour (768 KB), and a 4000x4000 photo-like JPEG (the frame limit's size). Each is decoded with the photo
limit (run.max_pixels, 50 MP) by the current path and by the baseline (the former conversion: a float64 copy
of wide grey, a read-only array then a reversed copy for colour), and with the embed stage's frame limit
(worker.frame_max_pixels, 16 MP), which refuses the first two undecoded.

    uv run python -m bench.decode_memory [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import median

_CHILD = r"""
import sys, numpy as np
from PIL import Image, ImageOps
from streaming import decode

def baseline(image):
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or wide.max() > 255 else 255.0
        grey = np.clip(wide / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])

path, way, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(path, "rb").read()
def status(field):
    return int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith(field)))
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # resets the peak (VmHWM) to the current size: the imports' own peak is not counted
before = status("VmRSS:")
if way == "baseline":
    decode._to_bgr8 = baseline
try:
    image = decode.decode_image(data, limit)
    outcome = "x".join(map(str, image.shape[:2]))
except decode.ImageDecodeError as exc:
    outcome = exc.reason.value
after = status("VmHWM:")
print((after - before) / 1024, outcome)
"""

PHOTO_LIMIT = 50_000_000
FRAME_LIMIT = 16_000_000


def _inputs(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    images = {
        "png16 7000x7000": Image.fromarray(np.zeros((7000, 7000), np.uint16)),
        "jpeg 7000x7000 flat": Image.new("RGB", (7000, 7000), (90, 120, 200)),
        "jpeg 4000x4000 photo": Image.fromarray(
            np.kron(rng.integers(0, 255, (500, 500, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
        ),
    }
    paths = {}
    for name, image in images.items():
        buffer = io.BytesIO()
        image.save(buffer, format="PNG" if name.startswith("png") else "JPEG", quality=90)
        paths[name] = folder / f"{name.replace(' ', '_')}.bin"
        paths[name].write_bytes(buffer.getvalue())
    return paths


def _peak_mib(path: Path, way: str, limit: int) -> tuple[float, str]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), way, str(limit)], check=True, capture_output=True, text=True
    )
    grown, outcome = done.stdout.split()
    return float(grown), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, path in _inputs(Path(folder)).items():
            row: dict[str, object] = {"input": name, "bytes": path.stat().st_size}
            peaks = {}
            for label, way, limit in (
                ("baseline", "baseline", PHOTO_LIMIT),
                ("photo", "current", PHOTO_LIMIT),
                ("frame", "current", FRAME_LIMIT),
            ):
                runs = [_peak_mib(path, way, limit) for _ in range(args.repeats)]
                peaks[label] = median([grown for grown, _ in runs])
                row[f"{label}_mib"] = round(peaks[label], 1)
                row[f"{label}_outcome"] = runs[0][1]
            row["photo_vs_baseline"] = round(peaks["photo"] / max(peaks["baseline"], 0.1), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
