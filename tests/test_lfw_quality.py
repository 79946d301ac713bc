"""Clustering quality on all of LFW DevTrain, the figures the README quotes. Slow: `pytest -m slow`."""

from pathlib import Path

import pytest

from models.analyzer import FaceAnalyzer
from models.settings import ModelSettings
from tests.conftest import data_dir
from workers.run.evaluate import evaluate
from workers.settings import Settings


@pytest.mark.slow
def test_online_rank_order_on_lfw(tmp_path: Path, cpu_models: ModelSettings, analyzer: FaceAnalyzer) -> None:
    report = evaluate(
        data_dir("lfw_devtrain"),
        Settings(models=cpu_models),
        cache=tmp_path / "lfw.npz",
        seeds=[1, 2, 3, 4],
        analyzer=analyzer,
        progress=False,
    )
    assert report.embedded == report.images == 9525
    online = [s for name, s in report.results.items() if name.startswith("online rank-order")]
    batch = report.results["batch rank-order"]
    cosine = report.results["cosine components t=0.45"]
    for scores in online:
        assert scores.bcubed_f >= 0.99
        assert scores.pairwise_f >= 0.99
        assert scores.bcubed_f >= cosine.bcubed_f
        assert abs(scores.bcubed_f - batch.bcubed_f) <= 0.005
    spread = max(s.bcubed_f for s in online) - min(s.bcubed_f for s in online)
    assert spread <= 0.005
