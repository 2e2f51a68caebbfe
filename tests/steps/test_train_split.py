"""Holdout split, feature columns and the gate (pure logic, no MLflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sluice.spec.loader import LoadedSpec
from sluice.spec.models import PipelineSpec, Split
from sluice.steps.evaluate import GateFailed, enforce_gate
from sluice.steps.records import GateDecision, decode
from sluice.steps.train import feature_columns, split_holdout


def frame(months: list[int]) -> pd.DataFrame:
    n = len(months)
    return pd.DataFrame(
        {
            "month": months,
            "distance": [float(100 + i) for i in range(n)],
            "carrier": [["UA", "AA", "DL"][i % 3] for i in range(n)],
            "is_delayed": [i % 2 for i in range(n)],
        }
    )


def loaded_with(training: dict[str, Any]) -> LoadedSpec:
    spec = PipelineSpec.model_validate(
        {
            "pipeline": "flights_delay",
            "source": {"uri": "data/landing/flights"},
            "features": {"job": "include/features/flights.py:build_features"},
            "training": {"target": "is_delayed", "model": "sklearn.linear_model.LogisticRegression", **training},
            "evaluation": {"metric": "roc_auc"},
        }
    )
    return LoadedSpec(spec=spec, path=Path("/nowhere/x.pipeline.yaml"), project_dir=Path("/nowhere"))


# --------------------------------------------------------------------------- split_holdout


def test_split_by_column_holds_out_the_latest_value():
    df = frame([1] * 5 + [2] * 4 + [3] * 3)

    train, holdout, text = split_holdout(df, Split(by="month", holdout="latest"))

    assert set(holdout["month"]) == {3}
    assert len(holdout) == 3
    assert set(train["month"]) == {1, 2}
    assert len(train) + len(holdout) == len(df)
    assert "month == 3" in text
    assert "random" not in text


def test_split_latest_works_on_unsorted_rows():
    df = frame([3, 1, 2, 3, 1])
    train, holdout, _ = split_holdout(df, Split(by="month"))
    assert sorted(holdout.index) == [0, 3]
    assert sorted(train.index) == [1, 2, 4]


def test_single_value_falls_back_to_seeded_random_fraction():
    df = frame([1] * 200)

    train, holdout, text = split_holdout(df, Split(by="month", fraction=0.25, seed=7))

    assert "only one value of month" in text
    assert "random 25% holdout" in text
    assert "seed 7" in text
    assert 0 < len(holdout) < len(df)
    assert 0.1 < len(holdout) / len(df) < 0.4
    assert set(train.index).isdisjoint(holdout.index)
    assert len(train) + len(holdout) == len(df)


def test_random_split_is_deterministic_for_a_seed():
    df = frame([1, 2] * 100)
    split = Split(holdout="random", fraction=0.3, seed=11)

    _, first, text = split_holdout(df, split)
    _, second, _ = split_holdout(df, split)
    _, other_seed, _ = split_holdout(df, Split(holdout="random", fraction=0.3, seed=12))

    assert list(first.index) == list(second.index)
    assert list(other_seed.index) != list(first.index)
    assert text == "random 30% holdout (seed 11)"
    assert "only one value" not in text


def test_fallback_split_is_deterministic_for_a_seed():
    df = frame([4] * 100)
    split = Split(by="month", fraction=0.2, seed=3)
    assert list(split_holdout(df, split)[1].index) == list(split_holdout(df, split)[1].index)


def test_no_by_column_uses_random_split():
    df = frame([1, 2, 3] * 50)
    _, holdout, text = split_holdout(df, Split(by=None, holdout="latest", fraction=0.2))
    assert set(holdout["month"]) == {1, 2, 3}
    assert text.startswith("random 20% holdout")


# --------------------------------------------------------------------------- feature_columns


def test_feature_columns_default_is_everything_but_target_and_drop():
    df = frame([1, 2])
    assert feature_columns(df, loaded_with({"drop": ["month"]})) == ["distance", "carrier"]


def test_feature_columns_without_drop_keeps_all_but_target():
    df = frame([1, 2])
    assert feature_columns(df, loaded_with({})) == ["month", "distance", "carrier"]


def test_feature_columns_honours_explicit_features_in_their_order():
    df = frame([1, 2])
    assert feature_columns(df, loaded_with({"features": ["carrier", "distance"]})) == ["carrier", "distance"]


def test_feature_columns_missing_explicit_feature_is_an_error():
    df = frame([1, 2])
    with pytest.raises(KeyError, match="dep_time"):
        feature_columns(df, loaded_with({"features": ["distance", "dep_time"]}))


def test_drop_must_not_contain_the_target():
    with pytest.raises(ValueError, match=r"training\.drop must not contain the target"):
        loaded_with({"drop": ["is_delayed"]})


# --------------------------------------------------------------------------- enforce_gate


def decision(verdict: str, reason: str) -> GateDecision:
    return decode(
        GateDecision,
        {
            "pipeline": "flights_delay",
            "verdict": verdict,
            "reason": reason,
            "metric": "roc_auc",
            "higher_is_better": True,
            "thresholds": {"min": 0.65, "max": None, "max_regression_vs_champion": 0.0},
            "candidate": {"run_id": "r1", "score": 0.6},
            "champion": None,
            "holdout": {"path": "/tmp/holdout.parquet", "rows": 10, "split": "random 20% holdout (seed 42)"},
            "checks": [{"name": "floor", "passed": verdict == "pass", "detail": reason}],
            "airflow_run_id": "manual__1",
            "decided_at": 0.0,
        },
    )


def test_gate_fail_raises_with_the_reason():
    reason = "FAILED candidate roc_auc 0.6000 >= min 0.65"
    with pytest.raises(GateFailed) as info:
        enforce_gate(decision("fail", reason))
    message = str(info.value)
    assert reason in message
    assert "flights_delay" in message
    assert "champion kept" in message


def test_gate_pass_does_not_raise():
    assert enforce_gate(decision("pass", "candidate roc_auc 0.8000 >= min 0.65")) is None
