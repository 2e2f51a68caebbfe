"""``training.engine: spark`` on a real standalone Spark cluster (master + worker from the pyspark wheel).

The candidate is fitted by XGBoost's PySpark estimator on the cluster, reading the feature
table from the pipeline's storage; the model it logs is checked the way it is used: loaded
with ``mlflow.pyfunc`` in a Python that cannot import pyspark, and scored by the gate against
a champion the local engine trained.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Project
from tests.feature_tables import features_of, flights_month

from sluice.services.storage import PipelineStore
from sluice.spec.loader import load_spec

pytestmark = pytest.mark.integration

PIPELINE = "spark_train"


def stop_spark() -> None:
    from pyspark import SparkContext

    active = SparkContext._active_spark_context
    if active is not None:
        active.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A standalone master and one worker (1 core), stopped with everything they started.

    A session of an earlier module (local[*]) is stopped first, or the train step would reuse it;
    the module's own session is stopped before the cluster.
    """
    from demo.production_stack import Processes, spark_cluster

    stop_spark()
    procs = Processes(tmp_path_factory.mktemp("spark-cluster"))
    with spark_cluster(procs, cores=1, memory="1g") as running:
        try:
            yield running
        finally:
            stop_spark()
    assert procs.leftovers() == [], "the cluster's JVMs are gone"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """OpenMP's idle threads spin: on a shared 2-core machine a boosted model crawls with more."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def spec(project: Project, training: dict[str, Any], features: dict[str, Any] | None = None) -> Path:
    from tests.conftest import demo_spec_dict

    base = demo_spec_dict()
    return project.write_spec(
        PIPELINE,
        features=base["features"] | {"conf": {"spark.sql.shuffle.partitions": "2"}} | (features or {}),
        training={"target": "is_delayed", "drop": ["month", "arr_delay"], "split": {"by": "month"}} | training,
        evaluation={"metric": "roc_auc", "gate": {"min": 0.5, "max_regression_vs_champion": 0.5}},
    )


SERVE_WITHOUT_SPARK = """
import json, sys
sys.modules["pyspark"] = None  # any import of pyspark (hence a JVM) fails
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.read_json(sys.stdin, orient="records", dtype=False)
print(json.dumps([float(v) for v in model.predict(rows)]))
"""


def test_a_model_fitted_on_the_cluster_is_served_without_spark_and_gated_against_a_local_champion(
    project: Project, cluster: Any
) -> None:
    import mlflow

    from sluice.steps import evaluate
    from sluice.steps.metrics import score
    from sluice.steps.promote import promote
    from sluice.steps.train import prepare, read_holdout, train_candidate

    store = PipelineStore(project.root / "data" / "sluice", PIPELINE)
    months = {m: flights_month(m) for m in (1, 2, 3)}

    local = load_spec(
        spec(project, {"model": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 30}})
    )
    champion_run = train_candidate(local, store, features_of(store, {1: months[1], 2: months[2]}), "d", "run-1")
    promote(local, evaluate.evaluate_candidate(local, store, champion_run, "run-1"))

    on_spark = load_spec(
        spec(
            project,
            {
                "engine": "spark",
                "model": "xgboost.spark.SparkXGBClassifier",
                "params": {"n_estimators": 30, "max_depth": 4, "num_workers": 1},
            },
            {"engine": "cluster", "master": cluster.master},
        )
    )
    features = features_of(store, months)
    trained = train_candidate(on_spark, store, features, "d", "run-2")

    # It ran on the cluster: the train step's application is the master's, and its run says so.
    state = cluster.state()
    apps = {a["id"]: a["name"] for a in state["activeapps"] + state["completedapps"]}
    run = mlflow.get_run(trained.mlflow_run_id)
    tags, params = run.data.tags, run.data.params
    assert params["spark.master"] == cluster.master
    assert apps[params["spark.application_id"]] == f"sluice-{PIPELINE}-train"

    # Lineage as every candidate carries it.
    assert tags["sluice.batches.trained_on"] == "b1,b2" and tags["sluice.batches.held_out"] == "b3"
    assert tags["sluice.spec_hash"] == on_spark.spec_hash and tags["sluice.role"] == "candidate"
    assert tags["sluice.split"] == "holdout = rows with month == 3"
    assert params["engine"] == "spark" and params["model"] == "xgboost.spark.SparkXGBClassifier"
    assert int(params["train_rows"]) == len(months[1]) + len(months[2]) == trained.train_rows
    assert "memory.budget_gib" not in params, "the task's memory budget does not bound a fit on Spark"
    assert trained.trained_on == ["b1", "b2"] and trained.held_out == ["b3"]

    # The holdout the gate reads is the held-out month, every column.
    holdout = read_holdout(store, trained.holdout_path)
    assert len(holdout) == trained.holdout_rows == len(months[3])
    assert sorted(holdout.columns) == sorted(months[3].columns)

    # Served like any other model: pyfunc, the same signature, raw prepared rows, no Spark.
    model_uri = f"runs:/{trained.mlflow_run_id}/model"
    info = mlflow.models.get_model_info(model_uri)
    assert info.signature is not None and [c.name for c in info.signature.inputs.inputs] == trained.features
    rows = prepare(holdout.head(50), trained.features)
    served = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_SPARK, model_uri],
        input=rows.to_json(orient="records"),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    candidate = evaluate.load_sklearn_model(model_uri)
    assert json.loads(served.stdout) == [float(v) for v in candidate.predict(rows)]
    assert type(candidate.named_steps["model"]).__module__.startswith("xgboost.")

    # The gate scores it against the local champion on that holdout, unchanged.
    decision = evaluate.evaluate_candidate(on_spark, store, trained, "run-2")
    y = holdout["is_delayed"].to_numpy()
    assert decision.candidate.score == score(candidate, prepare(holdout, trained.features), y, "roc_auc") > 0.5
    assert decision.champion is not None and decision.champion.version == "1"
    champion = evaluate.load_sklearn_model(f"runs:/{champion_run.mlflow_run_id}/model")
    assert decision.champion.score == score(champion, prepare(holdout, trained.features), y, "roc_auc")
    assert decision.holdout.rows == len(months[3])
