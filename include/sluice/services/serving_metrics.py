"""The model server's Prometheus metrics, and ``sluice status``'s reading of them.

Every series carries ``pipeline`` and ``model_version`` labels:

- ``sluice_requests_total``: ``/invocations`` requests answered (any status);
- ``sluice_request_errors_total``: those answered 4xx or 5xx (label ``status_class``);
- ``sluice_request_duration_seconds``: their latency (histogram);
- ``sluice_prediction_log_rows_total``, ``..._write_failures_total``, ``..._dropped_rows_total``,
  ``..._dropped_requests_total``: the prediction log (:mod:`sluice.services.prediction_log`);
- the client library's ``process_*`` series (start time, CPU, memory).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from sluice.services.prediction_log import PredictionLog

LABELS = ("pipeline", "model_version")
#: Latency buckets (seconds): a 10-row request takes a few milliseconds, a slow one seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _LogCollector:
    """The prediction log's counters, read when scraped (the writer thread only adds to ints)."""

    def __init__(self, log: PredictionLog, labels: list[str]) -> None:
        self.log = log
        self.labels = labels

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        stats = self.log.stats
        for name, text, value in (
            ("sluice_prediction_log_rows", "Rows written to the prediction log.", stats.written_rows),
            ("sluice_prediction_log_write_failures", "Prediction log writes that failed.", stats.failed_writes),
            ("sluice_prediction_log_dropped_rows", "Rows dropped from a full log buffer.", stats.dropped_rows),
            ("sluice_prediction_log_dropped_requests", "Requests not logged: queue full.", stats.dropped_requests),
        ):
            family = CounterMetricFamily(name, text, labels=list(LABELS))
            family.add_metric(self.labels, value)
            yield family


class ServerMetrics:
    """The metrics of one model server process, in a registry of its own.

    Args:
        pipeline: The ``pipeline`` label.
        version: The ``model_version`` label.
        log: The prediction log whose counters are exported, if the server keeps one.
    """

    def __init__(self, pipeline: str, version: str, log: PredictionLog | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

        self.registry: CollectorRegistry = CollectorRegistry()
        self._labels = (pipeline, version)
        self.requests = Counter(
            "sluice_requests", "/invocations requests answered.", LABELS, registry=self.registry
        ).labels(*self._labels)
        self.errors = Counter(
            "sluice_request_errors",
            "/invocations requests answered with 4xx or 5xx.",
            (*LABELS, "status_class"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "sluice_request_duration_seconds",
            "/invocations latency, from the request read to the answer.",
            LABELS,
            buckets=BUCKETS,
            registry=self.registry,
        ).labels(*self._labels)
        ProcessCollector(registry=self.registry)
        if log is not None:
            self.registry.register(_LogCollector(log, list(self._labels)))

    def observe(self, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.inc()
        self.latency.observe(seconds)
        if status >= 400:
            self.errors.labels(*self._labels, f"{status // 100}xx").inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))


@dataclass(frozen=True)
class Load:
    """What a server's ``/metrics`` says, summed over its series.

    Attributes:
        requests: Requests answered since the server started.
        errors: Of which 4xx or 5xx.
        uptime: Seconds since the server process started (None: not exported).
        p50: Median latency in seconds (None: no request yet).
        p99: 99th percentile latency in seconds.
        log_failures: Failed prediction-log writes.
        log_dropped: Rows (and requests) the prediction log dropped.
    """

    requests: float
    errors: float
    uptime: float | None
    p50: float | None
    p99: float | None
    log_failures: float = 0.0
    log_dropped: float = 0.0

    @property
    def rate(self) -> float | None:
        """Requests per second since the server started."""
        return self.requests / self.uptime if self.uptime else None


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a cumulative histogram (upper bound, count), as Prometheus'
    ``histogram_quantile`` estimates it (linear within the bucket)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


def parse(text: str, now: float | None = None) -> Load:
    """Read a ``/metrics`` text (prometheus-client's parser) into a :class:`Load`."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    buckets: dict[float, float] = {}
    start = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sluice_request_duration_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == "process_start_time_seconds":
                start = sample.value
            else:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    ordered = sorted(buckets.items())
    dropped = totals.get("sluice_prediction_log_dropped_rows_total", 0.0)
    return Load(
        requests=totals.get("sluice_requests_total", 0.0),
        errors=totals.get("sluice_request_errors_total", 0.0),
        uptime=None if start is None else max(0.0, (now or time.time()) - start),
        p50=quantile(ordered, 0.5),
        p99=quantile(ordered, 0.99),
        log_failures=totals.get("sluice_prediction_log_write_failures_total", 0.0),
        log_dropped=dropped + totals.get("sluice_prediction_log_dropped_requests_total", 0.0),
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def load_lines(base_url: str, timeout: float = 3.0) -> list[str]:
    """Lines for ``sluice status``: request rate, p50/p99 latency and errors from ``<base_url>/metrics``.

    Args:
        base_url: The server's public ``http://host:port`` (its ``/invocations`` without the path).
        timeout: Seconds to wait for the answer.
    """
    import requests

    url = f"{base_url.rstrip('/')}/metrics"
    try:
        resp = requests.get(url, timeout=timeout)
        resp.raise_for_status()
        load = parse(resp.text)
    except (requests.RequestException, ValueError) as exc:
        return [f"metrics: {url} does not answer ({type(exc).__name__}); no request rate or latency to show"]
    rate = "-" if load.rate is None else f"{load.rate:.2f} req/s"
    lines = [
        f"metrics ({url}, since the server started): {load.requests:.0f} requests, {rate}, "
        f"p50 {_ms(load.p50)}, p99 {_ms(load.p99)}, {load.errors:.0f} errors"
    ]
    if load.log_failures or load.log_dropped:
        lines.append(
            f"prediction log: {load.log_failures:.0f} failed writes, {load.log_dropped:.0f} rows or requests dropped"
        )
    return lines
