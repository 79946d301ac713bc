"""A site's camera list: the file an operator keeps of every camera a producer reads (TOML).

```toml
[[camera]]
id = "door"                                      # the camera id (Kafka key, face ids); never a URL's secrets
url = "rtsp://viewer:secret@10.0.0.5/stream1"    # any source `facestream produce` takes
space = "hq"                                     # identity space (default: --space)
max_fps = 5                                      # optional, per camera: override the command's limits
max_size = 640
transport = "udp"
```
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from streaming.errors import StreamingError
from streaming.frozen import FrozenModel
from streaming.messages import SpaceName
from streaming.redact import redact


class CameraListError(StreamingError, ValueError):
    """The camera list cannot be read or is not valid; the message names the file and the entry."""


class CameraEntry(FrozenModel):
    id: str = Field(min_length=1, max_length=200, pattern=r"^[^\s@]+$")
    url: str = Field(min_length=1)
    space: SpaceName | None = None
    max_fps: float | None = Field(None, gt=0)
    max_size: int | None = Field(None, ge=0)
    transport: Literal["tcp", "udp"] | None = None


class CameraList(FrozenModel):
    #: May be empty: a site's list with every camera commented out, or not yet written.
    camera: list[CameraEntry] = Field(default_factory=list)


def read_camera_list(path: Path) -> list[CameraEntry]:
    """The cameras of a list file, or CameraListError saying what is wrong (never showing a URL's secrets)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CameraListError(f"cannot read the camera list {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CameraListError(f"camera list {path} is not valid TOML: {exc}") from exc
    try:
        cameras = CameraList.model_validate(data).camera
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise CameraListError(redact(f"camera list {path}: {where}: {first['msg']}")) from exc
    ids = [entry.id for entry in cameras]
    repeated = sorted({camera for camera in ids if ids.count(camera) > 1})
    if repeated:
        raise CameraListError(f"camera list {path}: id(s) {repeated} appear more than once")
    return cameras
