"""What ``sluice status`` reads from a model server's /metrics: rate, p50/p99 latency, errors."""

from __future__ import annotations

import pytest
from tests.conftest import free_port

from sluice.services.serving_metrics import ServerMetrics, load_lines, parse, quantile


def test_status_reads_requests_errors_and_latency_quantiles_from_the_exposition() -> None:
    metrics = ServerMetrics("p", "3")
    for _ in range(97):
        metrics.observe(200, 0.004)
    metrics.observe(400, 0.004)
    metrics.observe(503, 2.0)
    metrics.observe(503, 2.0)
    load = parse(metrics.exposition().decode())
    assert (load.requests, load.errors) == (100, 3)
    assert load.p50 is not None and 0.0025 < load.p50 <= 0.005
    assert load.p99 is not None and 1.0 < load.p99 <= 2.5, "the slowest 2% decide the p99"
    assert load.uptime is not None and load.rate is not None and load.rate > 0


def test_quantiles_of_an_empty_histogram_are_unknown() -> None:
    assert quantile([], 0.5) is None
    assert quantile([(0.1, 0.0), (float("inf"), 0.0)], 0.99) is None


@pytest.mark.parametrize("q, expected", [(0.5, 0.05), (1.0, 0.1)])
def test_quantile_interpolates_within_the_bucket_as_prometheus_does(q: float, expected: float) -> None:
    assert quantile([(0.1, 10.0), (float("inf"), 10.0)], q) == pytest.approx(expected)


def test_status_says_when_the_server_does_not_answer() -> None:
    (line,) = load_lines(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert "does not answer" in line and "/metrics" in line
