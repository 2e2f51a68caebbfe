"""``training.engine: spark`` on the default Spark (``local[*]`` in the task): a regressor, a random
holdout and a sample, and the rows it refuses. The cluster case is ``test_train_spark.py``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from tests.conftest import Project
from tests.feature_tables import features_of, flights_month

from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec, load_spec

pytestmark = pytest.mark.integration

PIPELINE = "spark_local"


@pytest.fixture(autouse=True)
def one_thread(spark_module: None) -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def regressor_spec(project: Project, **training: Any) -> LoadedSpec:
    from tests.conftest import demo_spec_dict

    base = demo_spec_dict()
    path = project.write_spec(
        PIPELINE,
        features=base["features"] | {"conf": {"spark.sql.shuffle.partitions": "2"}},
        training={
            "target": "arr_delay",
            "engine": "spark",
            "model": "xgboost.spark.SparkXGBRegressor",
            "params": {"n_estimators": 20, "max_depth": 3},
            "drop": ["month", "is_delayed"],
        }
        | training,
        evaluation={"metric": "rmse", "gate": {"max": 1000}},
    )
    return load_spec(path)


def test_a_regressor_with_a_random_holdout_and_a_sample(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from sluice.steps import train
    from sluice.steps.evaluate import evaluate_candidate, load_sklearn_model
    from sluice.steps.metrics import score
    from sluice.steps.train import prepare, read_holdout, train_candidate

    def read_in_the_task(*args: Any) -> None:
        raise AssertionError("the spark engine read the feature table into the task")

    # Bounded memory: the task never reads the table itself (Spark does; the task gets the holdout).
    monkeypatch.setattr(train, "split_rows", read_in_the_task)

    loaded = regressor_spec(project, split={"holdout": "random", "fraction": 0.25, "seed": 3}, sample=0.5)
    store = PipelineStore(project.root / "data" / "sluice", PIPELINE)
    months = {m: flights_month(m, rows=800) for m in (1, 2)}
    trained = train_candidate(loaded, store, features_of(store, months), "d", "run-1")

    total = sum(len(f) for f in months.values())
    assert 0.15 * total < trained.holdout_rows < 0.35 * total, "about a quarter held out"
    assert trained.fitted is not None and trained.fitted.setting == "0.5" and trained.fitted.seed == 3
    assert trained.fitted.available == total - trained.holdout_rows
    assert (
        0.35 * trained.fitted.available < trained.train_rows == trained.fitted.fitted < 0.65 * trained.fitted.available
    )
    assert not trained.fitted.stratified, "a regressor's sample is not stratified"
    # A batch split row by row is both trained on and held out.
    assert trained.trained_on == trained.held_out == ["b1", "b2"]
    assert "random 25% holdout (seed 3" in trained.split

    again = train_candidate(loaded, store, features_of(store, months), "d", "run-2")
    assert (again.holdout_rows, again.train_rows) == (trained.holdout_rows, trained.train_rows), "seeded"

    holdout = read_holdout(store, trained.holdout_path)
    model = load_sklearn_model(f"runs:/{trained.mlflow_run_id}/model")
    y = holdout["arr_delay"].to_numpy()
    logged = mlflow.get_run(trained.mlflow_run_id).data.metrics["holdout_rmse"]
    assert np.isclose(logged, score(model, prepare(holdout, trained.features), y, "rmse"))
    decision = evaluate_candidate(loaded, store, trained, "run-1")
    assert decision.champion is None and decision.candidate.score == pytest.approx(logged)


def test_a_classifier_needs_labels_zero_to_n_minus_one(project: Project) -> None:
    from tests.conftest import demo_spec_dict

    from sluice.steps.train import train_candidate
    from sluice.steps.train_spark import SparkTrainingError

    base = demo_spec_dict()
    path = project.write_spec(
        PIPELINE,
        features=base["features"] | {"conf": {"spark.sql.shuffle.partitions": "2"}},
        training={
            "target": "is_delayed",
            "engine": "spark",
            "model": "xgboost.spark.SparkXGBClassifier",
            "params": {"n_estimators": 5},
            "drop": ["month", "arr_delay"],
            "split": {"by": "month"},
        },
    )
    store = PipelineStore(project.root / "data" / "sluice", PIPELINE)
    months = {
        m: flights_month(m, rows=200).assign(is_delayed=lambda f: f["is_delayed"].map({0: "on time", 1: "late"}))
        for m in (1, 2)
    }
    with pytest.raises(SparkTrainingError, match="map them to numbers in the feature job"):
        train_candidate(load_spec(path), store, features_of(store, months), "d", "run-1")
