"""The demo pipeline end to end in the production shape (issue 11, "Proof").

The demo spec adapted to the session's stack (:func:`demo.run_production.production_spec`:
storage and landing zone in the S3 bucket, features on the Spark cluster, MLflow through its
server) plays months 1, 2 and 5 on Airflow with two Celery workers, as ``make demo-production``
does; the expected outcomes are the embedded demo's (``tests/e2e/test_demo.py``). A second
pipeline (the same spec as ``flights_twin``, its model trained on the Spark cluster with
``training.engine: spark``) plays month 1 beside it, the two first models trained and promoted
at the same time against the one MLflow server.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from demo.production_stack import Stack
from demo.run_production import BESIDE, BUCKET, CLUSTER_TRAINING, PIPELINE, play, print_summary, train_overlap
from tests.e2e.demo_outcomes import check_demo_months
from tests.production.conftest import Holder

#: Start-up (about 3 min) and the three months (about 20 min on two busy cores) count in the first test.
pytestmark = [pytest.mark.production, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def summary(holder: Holder) -> dict[str, Any]:
    """Months 1 (first champion), 2 (40 corrupted rows) and 5 (drift) played once for the module.

    The twin pipeline's month 1 plays beside the first month.
    """
    started = time.monotonic()
    result = play(holder.stack, [1, 2, 5], bad_rows=40, beside=BESIDE)
    print(f"production-demo | months 1, 2, 5 played in {time.monotonic() - started:.0f}s")
    print_summary(result)
    return result


def test_months_go_through_ingest_monitor_drift_retrain_gate_and_deploy(summary: dict[str, Any]) -> None:
    check_demo_months(summary["months"])
    may = summary["months"][2]
    assert summary["deployed"]["version"] == (may["deployed"] or "1")


def test_task_instances_ran_on_both_workers(summary: dict[str, Any], stack: Stack) -> None:
    assert set(summary["hostnames"]) == set(stack.airflow.workers), summary["hostnames"]


def test_each_batch_is_in_the_bucket_exactly_once_and_nothing_on_local_disk(
    summary: dict[str, Any], stack: Stack
) -> None:
    landed = [m["batch"]["batch_id"] for m in summary["months"]]
    assert summary["batches"] == landed, "three batches, in order, none twice"
    records = [k for k in stack.s3.keys(BUCKET, f"{PIPELINE}/state/") if k.endswith("/batch.json")]
    assert sorted(k.split("/")[-2] for k in records) == sorted(landed), records
    sources = [m["batch"]["source_file"] for m in summary["months"]]
    assert sources == [f"flights_2013-{m:02d}.parquet" for m in (1, 2, 5)]
    # The Airflow components' project folder: a local storage root would be data/sluice there.
    project = stack.root / "airflow"
    assert not (project / "data" / "sluice").exists()
    assert not list(project.rglob("clean.parquet")), "no batch data on the workers' disk"


def test_mlflow_server_holds_the_runs_lineage_and_champion(summary: dict[str, Any], stack: Stack) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stack.mlflow.url, registry_uri=stack.mlflow.url)
    champion = client.get_model_version_by_alias(PIPELINE, "champion")
    assert str(champion.version) == summary["deployed"]["version"]
    run = client.get_run(str(champion.run_id))
    assert run.data.tags["sluice.spec_hash"]
    assert run.data.tags["sluice.features_key"]
    batches = run.data.tags["sluice.batches"].split(",")
    assert summary["months"][0]["batch"]["batch_id"] in batches
    experiment = client.get_experiment(run.info.experiment_id)
    runs = client.search_runs([experiment.experiment_id], max_results=200)
    trained = [r for r in runs if "sluice.spec_hash" in r.data.tags and "sluice.features_key" in r.data.tags]
    assert len(trained) >= 2, "the January champion and the May candidate"
    # Artifacts go through the server into its bucket, not onto a worker's disk.
    assert stack.s3.keys(stack.mlflow.artifact_bucket, ""), "the MLflow artifact bucket is empty"


def test_two_pipelines_train_and_promote_at_once_without_touching_each_other(
    summary: dict[str, Any], stack: Stack
) -> None:
    from mlflow.tracking import MlflowClient

    twin = summary["beside"]
    assert train_overlap(summary) > 0, "the two first train runs did not run at the same time"
    (month,) = twin["months"]
    assert month["batch"]["status"] == "accepted" and month["trigger"]["triggers"] == ["manual"]
    assert month["decision"]["verdict"] == "pass" and month["deployed"] == "1", "the twin's own first champion"
    assert twin["deployed"]["version"] == "1"

    client = MlflowClient(tracking_uri=stack.mlflow.url, registry_uri=stack.mlflow.url)
    experiments = {}
    for name, own in ((PIPELINE, summary), (BESIDE, twin)):
        champion = client.get_model_version_by_alias(name, "champion")
        assert str(champion.version) == own["deployed"]["version"], f"{name}'s alias moved by the other"
        versions = client.search_model_versions(f"name = '{name}'")
        trained = {m["decision"]["candidate"]["run_id"] for m in own["months"] if m["decision"]}
        assert {str(v.run_id) for v in versions} <= trained, f"{name} holds a version it did not train"
        assert str(champion.run_id) in trained
        runs = [client.get_run(str(v.run_id)) for v in versions]
        assert {r.data.tags["sluice.pipeline"] for r in runs} == {name}
        experiments[name] = {r.info.experiment_id for r in runs}
    assert not experiments[PIPELINE] & experiments[BESIDE], "the two pipelines share an MLflow experiment"

    # Storage: each pipeline under its own prefix of the bucket, one batch for the twin.
    twin_records = [k for k in stack.s3.keys(BUCKET, f"{BESIDE}/state/") if k.endswith("/batch.json")]
    assert [k.split("/")[-2] for k in twin_records] == twin["batches"] == [month["batch"]["batch_id"]]
    assert len(summary["batches"]) == 3, "the twin's batch did not land in the first pipeline's store"
    assert summary["deployed"]["port"] != twin["deployed"]["port"], "each pipeline serves on its own port"


def test_the_twin_is_trained_on_the_spark_cluster_then_gated_and_served_like_any_model(
    summary: dict[str, Any], stack: Stack
) -> None:
    from mlflow.tracking import MlflowClient

    twin = summary["beside"]
    (month,) = twin["months"]
    client = MlflowClient(tracking_uri=stack.mlflow.url, registry_uri=stack.mlflow.url)
    champion = client.get_model_version_by_alias(BESIDE, "champion")
    run = client.get_run(str(champion.run_id))
    params = run.data.params

    # Its run says where it was fitted: XGBoost's PySpark estimator, in an application of the
    # stack's Spark master named after the pipeline's train step.
    assert params["engine"] == "spark" and params["model"] == CLUSTER_TRAINING["model"]
    assert params["spark.master"] == stack.spark.master
    state = stack.spark.state()
    apps = {a["id"]: a["name"] for a in state["activeapps"] + state["completedapps"]}
    assert apps.get(params["spark.application_id"]) == f"sluice-{BESIDE}-train", apps
    assert int(params["train_rows"]) > 0 and "memory.budget_gib" not in params
    demo_first = client.get_run(summary["months"][0]["decision"]["candidate"]["run_id"])
    assert demo_first.data.params["engine"] == "local", "the demo pipeline itself still trains in the task"

    # Gated like any candidate: the gate scored this run on its holdout and passed it.
    decision = month["decision"]
    assert decision["candidate"]["run_id"] == str(champion.run_id)
    assert decision["verdict"] == "pass" and decision["champion"] is None
    assert decision["candidate"]["score"] >= decision["thresholds"]["min"]
    assert decision["holdout"]["rows"] == int(params["holdout_rows"])

    # Served like any model: the deployed version answers rows with a class per row.
    assert twin["deployed"]["version"] == str(champion.version)
    served = twin["served"]
    rows = twin["deployed"]["smoke"]["inputs"]
    assert served["status"] == 200, served
    answers = served["body"]["predictions"]
    assert len(answers) == len(rows) and set(answers) <= {0, 1}
    assert answers[:5] == twin["deployed"]["smoke"]["predictions"], "the server answers as it did at deploy"


def test_teardown_leaves_nothing(holder: Holder) -> None:
    holder.check_teardown()
