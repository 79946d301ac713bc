import json
from pathlib import Path

import pytest

from models.analyzer import FaceAnalyzer
from models.settings import ModelSettings
from tests.conftest import data_dir
from workers.cli import main
from workers.run.evaluate import EmbeddedSet, evaluate
from workers.settings import Settings


def test_eval_scores_every_metric_and_reuses_its_embeddings(
    tmp_path: Path, cpu_models: ModelSettings, analyzer: FaceAnalyzer
) -> None:
    dataset = data_dir("faceapi_bbt")
    cache = tmp_path / "bbt.npz"
    settings = Settings(models=cpu_models)
    first = evaluate(dataset, settings, cache=cache, sweep=[0.3], analyzer=analyzer, progress=False)
    assert (first.images, first.identities, first.embedded) == (40, 8, 40)
    assert not first.from_cache
    assert first.faces_per_second > 0
    online = first.results["online rank-order"]
    assert online.bcubed_f > 0.8
    assert online.pairwise_f > 0.7
    assert abs(first.results["batch rank-order"].bcubed_f - online.bcubed_f) < 0.02
    assert [t for t, _ in first.sweep] == [0.3]

    second = evaluate(dataset, settings, cache=cache, analyzer=analyzer, progress=False)
    assert second.from_cache
    assert second.results == first.results
    assert len(EmbeddedSet.load(cache).paths) == 40


def test_eval_json_report(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESTREAM_MODELS__RUNTIME__CACHE_DIR", str(tmp_path / "cache"))
    assert main(["eval", str(data_dir("dlib_johns")), "--json", "--cpu", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 55
    assert report["identities"] == 5
    for key in (
        "pairwise_f",
        "bcubed_f",
        "nmi",
        "purity",
        "rand_index",
        "pairwise_precision",
        "bcubed_recall",
    ):
        assert 0.0 <= report["results"]["online rank-order"][key] <= 1.0


def test_eval_refuses_a_folder_without_identity_folders(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "loose.jpg").write_bytes(b"")
    assert main(["eval", str(tmp_path), "--no-progress"]) == 1
    assert "no identity/image files" in caplog.text
