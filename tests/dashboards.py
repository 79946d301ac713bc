"""What the shipped dashboard and alerts ask of a scrape: every metric they use is exported."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]


DEPLOY = REPO / "deploy"


def queried_metrics() -> dict[str, set[str]]:
    """Metric names used by each query of the dashboard and the alert rules."""
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "facestream.json").read_text(encoding="utf-8"))
    queries = {f"dashboard: {p['title']}": t["expr"] for p in dashboard["panels"] for t in p["targets"]}
    for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))["groups"]:
        queries |= {f"alert: {rule['alert']}": rule["expr"] for rule in group["rules"]}
    return {where: set(re.findall(r"\bfacestream_[a-z_]+", expr)) for where, expr in queries.items()}


def exported_metrics(scrape: str) -> set[str]:
    """Sample names a /metrics page exports, with those of families that have no sample yet."""
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in text_string_to_metric_families(scrape):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def assert_dashboard_and_alerts_use_exported_metrics(scrape: str, producer: bool = False) -> None:
    """Every metric the queries name is on the scraped page: a worker's, or (``producer``) `facestream
    produce`'s, whose metrics are the ones named facestream_producer_*."""
    exported = exported_metrics(scrape)
    queried = {
        where: {name for name in names if name.startswith("facestream_producer_") == producer}
        for where, names in queried_metrics().items()
    }
    unknown = {where: sorted(names - exported) for where, names in queried.items() if names - exported}
    assert not unknown, (
        f"queries name metrics the {'producer does' if producer else 'workers do'} not export: {unknown}"
    )
