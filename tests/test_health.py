"""The HTTP side of a worker: /healthz, /readyz and /metrics as an orchestrator and Prometheus see them."""

from __future__ import annotations

from prometheus_client import REGISTRY

from tests.local_services import http_get
from workers.plumbing import metrics


def test_readiness_follows_the_roles_and_liveness_the_loops() -> None:
    embed, cluster = metrics.Health("embed"), metrics.Health("cluster", stall_s=0.0)
    server = metrics.HealthServer([embed, cluster], "127.0.0.1", 0).start()
    try:
        assert http_get(server.port, "/readyz") == (503, "embed: starting; cluster: starting")
        embed.ready()
        cluster.not_ready("RedisError: connection refused")
        status, body = http_get(server.port, "/readyz")
        assert status == 503
        assert "cluster: RedisError: connection refused" in body
        cluster.ready()
        assert http_get(server.port, "/readyz")[0] == 200
        assert http_get(server.port, "/healthz") == (503, "stalled: cluster")  # its loop has not turned in time
        status, scraped = http_get(server.port, "/metrics")
        assert status == 200
        assert 'facestream_ready{role="cluster"} 1.0' in scraped
        assert http_get(server.port, "/nothing")[0] == 404
    finally:
        server.stop()


def test_consumer_lag_is_summed_per_topic_from_librdkafka_statistics() -> None:
    stats = {
        "topics": {
            "frames-lag-test": {
                "partitions": {
                    "0": {"consumer_lag": 7},
                    "1": {"consumer_lag": 5},
                    "2": {"consumer_lag": -1},  # not assigned to this process
                    "-1": {"consumer_lag": -1},  # librdkafka's internal unassigned partition
                }
            }
        }
    }
    metrics.record_lag(stats)
    assert REGISTRY.get_sample_value("facestream_consumer_lag", {"topic": "frames-lag-test"}) == 12
