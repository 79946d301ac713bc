"""docs/configuration.md is the settings model, written out: this fails when they drift apart."""

from pathlib import Path

from workers.config_reference import reference_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_configuration_reference_matches_the_settings_model() -> None:
    assert DOC.read_text(encoding="utf-8") == reference_markdown(), (
        "docs/configuration.md is stale: uv run python -m workers.config_reference > docs/configuration.md"
    )


def test_every_setting_is_described() -> None:
    undocumented = [
        line for line in reference_markdown().splitlines() if line.startswith("| `") and line.endswith("|  |")
    ]
    assert not undocumented
