"""The train step's rows: the compact read, the split, ``training.sample`` and the memory refusal (no Airflow).

The feature tables are written per batch as ``features.scope: batch`` caches them (one table a
batch), in the demo's shape: 32-bit integers, doubles with missing values, strings with missing
values, integers with missing values (plane columns after a left join).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from tests.feature_tables import features_of

from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec, load_spec
from sluice.steps.records import FeatureResult, GateDecision, decode
from sluice.steps.training_data import TrainingMemoryError, sample_rows, split_rows

PIPELINE = "flights_delay"
CARRIERS = ["UA", "AA", "DL", "B6", "EV", "WN"]
DESTS = [f"D{i:02d}" for i in range(40)]


def month_rows(month: int, rows: int) -> pd.DataFrame:
    """One month of demo-shaped features; delayed flights lean on late hours, rain and some carriers."""
    rng = np.random.default_rng(month)
    hour = rng.integers(5, 23, rows)
    carrier = rng.choice(CARRIERS, rows).astype(object)
    precip = np.where(rng.random(rows) < 0.1, np.nan, rng.exponential(0.05, rows))
    risk = (hour - 5) / 18 + np.nan_to_num(precip) * 3 + np.isin(carrier, ["EV", "B6"]) * 0.3
    carrier[rng.random(rows) < 0.02] = None
    plane_age = pd.array(np.where(rng.random(rows) < 0.15, -1, rng.integers(0, 30, rows)), dtype="Int32")
    plane_age[plane_age == -1] = pd.NA
    return pd.DataFrame(
        {
            "is_delayed": (risk + rng.normal(0, 0.35, rows) > 0.9).astype("int32"),
            "month": np.full(rows, month, dtype="int32"),
            "day_of_week": rng.integers(1, 8, rows).astype("int32"),
            "dep_hour": hour.astype("int32"),
            "carrier": carrier,
            "origin": rng.choice(["EWR", "JFK", "LGA"], rows),
            "dest": rng.choice(DESTS, rows),
            "distance": rng.integers(100, 3000, rows).astype("int32"),
            "temp": rng.normal(55, 15, rows),
            "precip": precip,
            "plane_age": plane_age,
            "plane_type": np.where(rng.random(rows) < 0.15, None, rng.choice(["Fixed wing multi", "Rotor"], rows)),
        }
    )


def training_section(**training: Any) -> dict[str, Any]:
    """The demo spec's ``training`` with a quick model (30 boosting rounds) and ``training`` on top."""
    spec = yaml.safe_load((Path(__file__).parents[2] / "dags" / f"{PIPELINE}.pipeline.yaml").read_text())
    return dict(spec["training"]) | {"params": {"max_iter": 30, "random_state": 42}} | training


def spec_at(folder: Path, metric: str = "roc_auc", **training: Any) -> LoadedSpec:
    """A project in ``folder`` with the demo spec, its ``training`` section updated with ``training``."""
    (folder / "dags").mkdir(parents=True, exist_ok=True)
    (folder / "include" / "features").mkdir(parents=True, exist_ok=True)
    (folder / "include" / "features" / "flights.py").write_text("def build_features(spark, inputs):\n    pass\n")
    (folder / "pyproject.toml").write_text("[project]\nname = 'training-data-test'\n")
    spec = yaml.safe_load((Path(__file__).parents[2] / "dags" / f"{PIPELINE}.pipeline.yaml").read_text())
    spec["training"] = training_section(**training)
    spec["evaluation"] = {"metric": metric} if metric != "roc_auc" else spec["evaluation"]
    path = folder / "dags" / f"{PIPELINE}.pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_spec(path)


@pytest.fixture()
def demo(tmp_path: Path) -> tuple[PipelineStore, FeatureResult]:
    store = PipelineStore(tmp_path / "store", PIPELINE)
    return store, features_of(store, {m: month_rows(m, 1500) for m in (1, 2, 3)})


# --------------------------------------------------------------------------- the compact read


def test_the_rows_are_read_compactly_and_the_model_sees_the_same_values(
    tmp_path: Path, demo: tuple[PipelineStore, FeatureResult]
) -> None:
    from sluice.steps.features import read_features_traced
    from sluice.steps.train import prepare, split_holdout

    store, features = demo
    loaded = spec_at(tmp_path / "p")
    rows = split_rows(loaded, store, features)

    # Strings as categoricals, only the model's columns and the label for the fitted rows;
    # every column for the holdout (a champion may read others).
    assert {str(rows.train[c].dtype) for c in ("carrier", "origin", "dest", "plane_type")} == {"category"}
    assert list(rows.train.columns) == [*rows.columns, "is_delayed"]
    assert "month" not in rows.columns and "month" in rows.holdout.columns
    # The same rows, and the same model input, as the whole table read into pandas and split.
    whole, _ = read_features_traced(store, features)
    old_train, old_holdout, old_text = split_holdout(whole, loaded.spec.training.split)
    assert rows.split == old_text == "holdout = rows with month == 3"
    for new, old in ((rows.train, old_train), (rows.holdout, old_holdout)):
        pd.testing.assert_frame_equal(prepare(new, rows.columns), prepare(old.reset_index(drop=True), rows.columns))
        assert list(new["is_delayed"]) == list(old["is_delayed"])
    assert rows.trained_on == ["b1", "b2"] and rows.held_out == ["b3"]


def test_a_part_without_a_newer_column_reads_it_as_missing(tmp_path: Path) -> None:
    store = PipelineStore(tmp_path / "store", PIPELINE)
    older = month_rows(1, 300).drop(columns=["plane_type"])
    features = features_of(store, {1: older, 2: month_rows(2, 300), 3: month_rows(3, 300)})

    rows = split_rows(spec_at(tmp_path / "p"), store, features)

    assert rows.train["plane_type"].iloc[:300].isna().all()  # January's rows come first
    assert rows.train["plane_type"].iloc[300:].notna().any()


def test_the_holdout_file_holds_plain_strings(tmp_path: Path, demo: tuple[PipelineStore, FeatureResult]) -> None:
    """evaluate (and a champion) reads the holdout as before: strings as objects, not categoricals."""
    from sluice.steps.train import write_holdout

    store, features = demo
    rows = split_rows(spec_at(tmp_path / "p"), store, features)
    write_holdout(store, "holdout.parquet", rows.holdout)

    back = store.parquet.read("holdout.parquet")
    assert back["carrier"].dtype == object and back["carrier"].isna().any()
    assert list(back.columns) == list(rows.holdout.columns) and len(back) == len(rows.holdout)


def test_training_without_a_sample_scores_the_holdout_as_before(
    tmp_path: Path, demo: tuple[PipelineStore, FeatureResult]
) -> None:
    """The holdout metric of the compact read equals the one of the whole table read into pandas."""
    from sluice.steps.features import read_features_traced
    from sluice.steps.metrics import score
    from sluice.steps.train import _fit, make_estimator, prepare, split_holdout

    store, features = demo
    loaded = spec_at(tmp_path / "p")
    training = loaded.spec.training
    whole, _ = read_features_traced(store, features)  # the train step before the compact read
    train, holdout, _ = split_holdout(whole, training.split)
    columns = [c for c in whole.columns if c not in ("is_delayed", "month")]
    before = make_estimator(training.model, training.params, prepare(train, columns))
    before.fit(prepare(train, columns), train["is_delayed"].to_numpy())
    expected = score(before, prepare(holdout, columns), holdout["is_delayed"].to_numpy(), "roc_auc")

    fitted = _fit(loaded, store, features)

    assert fitted.holdout_score == pytest.approx(expected, abs=1e-12)
    assert fitted.train_rows == len(train) and fitted.holdout_rows == len(holdout)
    assert fitted.rows.fitted.fitted == fitted.rows.fitted.available == len(train)


# --------------------------------------------------------------------------- training.sample


def test_a_sample_of_rows_is_stratified_seeded_and_leaves_the_holdout_whole(
    tmp_path: Path, demo: tuple[PipelineStore, FeatureResult]
) -> None:
    store, features = demo
    everything = split_rows(spec_at(tmp_path / "all"), store, features)
    rows = split_rows(spec_at(tmp_path / "s", sample=1000), store, features)
    again = split_rows(spec_at(tmp_path / "again", sample=1000), store, features)
    other = split_rows(spec_at(tmp_path / "other", sample=1000, seed=7), store, features)

    assert len(rows.train) == 1000 and rows.fitted.fitted == 1000
    assert rows.fitted.available == len(everything.train) == 3000
    assert rows.fitted.stratified and rows.fitted.seed == 42  # params.random_state
    assert len(rows.holdout) == len(everything.holdout)  # never sampled
    share = everything.train["is_delayed"].mean()
    assert abs(rows.train["is_delayed"].sum() - share * 1000) <= 1  # the class shares kept
    assert rows.train.equals(again.train)
    assert not rows.train.equals(other.train) and other.fitted.seed == 7
    assert rows.fitted.describe() == "1,000 of 3,000 training rows (33.3%), stratified by the target, seed 42"


def test_a_share_of_the_rows_and_a_sample_larger_than_the_rows() -> None:
    from sluice.spec.models import Training

    y = np.array([0] * 87 + [1] * 13)
    share = Training(target="y", model="a.B", sample=0.2, seed=3)
    picked, fitted = sample_rows(y, share, stratify=True)
    assert (fitted.fitted, fitted.setting, fitted.seed) == (20, "0.2", 3)
    assert list(np.bincount(y[picked])) == [17, 3]  # 17.4 and 2.6: the row left goes to the larger remainder

    everything, whole = sample_rows(y, Training(target="y", model="a.B", sample=500), stratify=True)
    assert len(everything) == 100 and whole.fitted == whole.available == 100 and whole.fraction == 1.0
    assert whole.describe() == "all 100 training rows"


def test_a_rare_class_keeps_at_least_one_row() -> None:
    from sluice.spec.models import Training

    y = np.array([0] * 999 + [1])
    picked, _ = sample_rows(y, Training(target="y", model="a.B", sample=10), stratify=True)
    assert len(picked) == 10 and 1 in set(y[picked])


def test_a_regressor_sample_is_not_stratified(tmp_path: Path, demo: tuple[PipelineStore, FeatureResult]) -> None:
    store, features = demo
    loaded = spec_at(tmp_path / "p", "rmse", sample=0.5, model="sklearn.ensemble.HistGradientBoostingRegressor")

    rows = split_rows(loaded, store, features)

    assert rows.fitted.fitted == 1500 and not rows.fitted.stratified


@pytest.mark.parametrize(
    ("value", "message"),
    [(0, "sample 0 is not a number of rows"), (1.5, "neither a share"), (True, "not a number"), (-0.5, "neither")],
)
def test_a_sample_that_is_neither_rows_nor_a_share_is_refused_at_its_line(
    tmp_path: Path, value: Any, message: str
) -> None:
    from sluice.spec.errors import SpecError

    with pytest.raises(SpecError, match=message) as info:
        spec_at(tmp_path, sample=value)
    assert "flights_delay.pipeline.yaml:" in str(info.value)


# --------------------------------------------------------------------------- the memory refusal


def test_a_fit_over_the_memory_budget_is_refused_before_the_rows_are_read(
    tmp_path: Path, demo: tuple[PipelineStore, FeatureResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.steps import training_data

    store, features = demo
    read = []
    monkeypatch.setattr(training_data, "read_rows", lambda *a: read.append(a))
    loaded = spec_at(tmp_path / "p", max_memory_gb=0.001)

    with pytest.raises(TrainingMemoryError) as info:
        split_rows(loaded, store, features)

    message = str(info.value)
    assert message.startswith(f"{loaded.path}:")  # the spec file and the line of training
    assert "over its budget of 0.0 GiB (training.max_memory_gb)" in message
    assert "3,000 of 3,000 training rows to fit x 10 model columns" in message
    assert "1,500 held-out rows" in message and "4,500 rows in the feature table" in message
    assert "even the holdout and the label column do not fit" in message
    assert read == []  # refused before any feature column was read


def test_the_refusal_names_a_sample_that_fits(
    tmp_path: Path, demo: tuple[PipelineStore, FeatureResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    from sluice.steps import training_data

    store, features = demo
    loaded = spec_at(tmp_path / "p")
    everything = split_rows(loaded, store, features).memory.estimate
    # Room for the first pass, the holdout and about half the training rows (nothing else in use).
    budget = everything.fixed_bytes + (everything.total_bytes - everything.fixed_bytes) // 2
    monkeypatch.setattr(training_data, "memory_in_use", lambda: 0)
    monkeypatch.setattr(training_data, "memory_budget", lambda training: (budget, "training.max_memory_gb"))

    with pytest.raises(TrainingMemoryError, match=r"set training\.sample to at most ([\d,]+) rows") as info:
        split_rows(loaded, store, features)

    most = int(re.search(r"sample: (\d+)", str(info.value)).group(1))  # type: ignore[union-attr]
    assert 1400 < most < 1600
    rows = split_rows(spec_at(tmp_path / "q", sample=most), store, features)
    assert rows.fitted.fitted == most and rows.memory.need <= budget


def test_the_default_budget_is_most_of_the_memory_available() -> None:
    from sluice.spec.models import Training
    from sluice.steps.training_data import available_memory, memory_budget

    budget, source = memory_budget(Training(target="y", model="a.B"))
    free, _ = available_memory()
    assert 0.6 * free <= budget and "60% of" in source and "training.max_memory_gb" in source
    assert memory_budget(Training(target="y", model="a.B", max_memory_gb=2))[0] == 2 * 2**30


# --------------------------------------------------------------------------- recorded (MLflow, gate)


def test_the_sample_is_recorded_in_the_run_and_the_gate_record(project: Any) -> None:
    from sluice.services import tracking
    from sluice.steps.evaluate import evaluate_candidate
    from sluice.steps.train import train_candidate

    store = PipelineStore(project.root / "data" / "sluice", PIPELINE)
    features = features_of(store, {m: month_rows(m, 1500) for m in (1, 2, 3)})
    loaded = load_spec(project.write_spec(PIPELINE, training=training_section(sample=0.5)))

    trained = train_candidate(loaded, store, features, f"{PIPELINE}__train", "manual__1")
    decision = evaluate_candidate(loaded, store, trained, "manual__1")

    assert trained.train_rows == 1500 and trained.fitted is not None and trained.fitted.fitted == 1500
    run = tracking.configure(project.root).get_run(trained.mlflow_run_id)
    params = run.data.params
    assert (params["sample.rows_available"], params["sample.rows_fitted"]) == ("3000", "1500")
    assert (params["sample.fraction"], params["sample.stratified"], params["sample.seed"]) == ("0.5", "True", "42")
    assert params["sample.setting"] == "0.5" and float(params["memory.estimated_gib"]) > 0
    assert run.data.tags["sluice.sample"] == "1,500 of 3,000 training rows (50.0%), stratified by the target, seed 42"
    assert decision.fitted == trained.fitted
    retried = train_candidate(loaded, store, features, f"{PIPELINE}__train", "manual__1")  # a retry: reused
    assert retried.mlflow_run_id == trained.mlflow_run_id and retried.fitted == trained.fitted
    on_disk = decode(GateDecision, store.json.read(store.keys.run("manual__1", "decision.json")))
    assert on_disk.fitted == trained.fitted


def test_a_feature_table_without_the_target_is_refused_naming_the_fix(
    tmp_path: Path, demo: tuple[PipelineStore, FeatureResult]
) -> None:
    """The run-time guard both engines share: the key, the table's columns and what to do."""
    store, features = demo
    loaded = spec_at(tmp_path / "p", target="is_late")
    with pytest.raises(KeyError) as refused:
        split_rows(loaded, store, features)
    message = str(refused.value)
    assert "training.target 'is_late' is not a column of the feature table" in message
    assert "'is_delayed'" in message, "the columns the table has"
    assert "fix: name a column that features.job" in message and "sluice lint" in message
