"""The ingest and train DAGs under dag.test() with real GX, Spark, MLflow and model server."""

from __future__ import annotations

import pytest

from sluice.services.storage import PipelineStore, read_json
from tests.conftest import Project
from tests.integration.conftest import build_dags, run_dag, small_spec
from tests.storage import local

pytestmark = pytest.mark.integration
SAMPLE = 3000


def _store(project: Project) -> PipelineStore:
    return PipelineStore(project.root / "data" / "sluice", "flights_delay")


def _champion(project: Project) -> str | None:
    from sluice.services import tracking

    client = tracking.configure(project.root)
    champ = tracking.champion(client, "flights_delay")
    return str(champ.version) if champ else None


def test_first_model_becomes_champion_and_worse_candidate_keeps_it(flights_project: Project) -> None:
    from demo.producer import drop_month
    from sluice.steps.deploy import current_deployment, http_json

    project = flights_project
    drop_month(project.landing, 1, sample=SAMPLE)
    dags = build_dags(project)
    state, tasks = run_dag(dags["flights_delay__ingest"])
    assert state == "success", tasks
    assert tasks["publish"] == "success"

    state, tasks = run_dag(dags["flights_delay__train"])
    assert state == "success", tasks
    assert _champion(project) == "1"
    deployed = current_deployment(_store(project))
    assert deployed is not None and deployed["version"] == "1"
    status, body = http_json(f"http://127.0.0.1:{deployed['port']}/sluice/info")
    assert status == 200 and body["version"] == "1"

    # A candidate that only sees `distance` is clearly worse than the champion.
    small_spec(project, features=["distance"])
    dags = build_dags(project)
    state, tasks = run_dag(dags["flights_delay__train"])
    assert state == "failed"
    assert tasks["gate"] == "failed"
    assert tasks["promote"] == "upstream_failed" and tasks["deploy"] == "upstream_failed"
    assert _champion(project) == "1"
    after = current_deployment(_store(project))
    assert after == deployed, "a failed gate must not touch the deployment"
    status, body = http_json(f"http://127.0.0.1:{deployed['port']}/sluice/info")
    assert status == 200 and body["version"] == "1"

    decisions = sorted((project.root / "data" / "sluice" / "flights_delay" / "runs").glob("*/decision.json"))
    failed = [read_json(d) for d in decisions if read_json(d)["verdict"] == "fail"]
    assert len(failed) == 1
    record = failed[0]
    assert record["champion"]["version"] == "1"
    assert record["candidate"]["score"] < record["champion"]["score"] - 0.01
    assert record["thresholds"]["max_regression_vs_champion"] == 0.01
    assert any(c["name"] == "vs_champion" and not c["passed"] for c in record["checks"])


def test_lineage_is_recorded_on_the_mlflow_run(flights_project: Project) -> None:
    from demo.producer import drop_month
    from sluice.services import tracking

    project = flights_project
    drop_month(project.landing, 1, sample=SAMPLE)
    dags = build_dags(project)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    assert run_dag(dags["flights_delay__train"])[0] == "success"
    client = tracking.configure(project.root)
    version = client.get_model_version_by_alias("flights_delay", "champion")
    run = client.get_run(version.run_id)
    tags = run.data.tags
    batch_id = _store(project).batches.ids()[0]
    assert tags["sluice.batches"] == batch_id
    # One month: the split falls back to a random share of its rows, so the batch is on both sides.
    assert tags["sluice.batches.trained_on"] == batch_id and tags["sluice.batches.held_out"] == batch_id
    for key in ("sluice.spec_hash", "sluice.git_commit", "sluice.feature_job_hash", "sluice.airflow_run_id"):
        assert tags[key], key
    assert tags["sluice.airflow_dag_id"] == "flights_delay__train"
    assert tags["sluice.gate.verdict"] == "pass"
    assert "holdout_roc_auc" in run.data.metrics
    model_info = client.get_logged_model(run.outputs.model_outputs[0].model_id) if run.outputs else None
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for a in client.list_artifacts(run.info.run_id, "gate")
    }
    assert "lineage.json" in artifacts and "gate/decision.json" in artifacts
    validation = {a.path for a in client.list_artifacts(run.info.run_id, f"validation/{batch_id}")}
    assert validation == {f"validation/{batch_id}/validation.json", f"validation/{batch_id}/gx_result.json"}
    assert model_info is None or model_info.name == "model"


def test_refit_after_gate_serves_a_model_fitted_on_the_held_out_month_too(flights_project: Project) -> None:
    from demo.producer import drop_month
    from sluice.services import tracking
    from sluice.steps.deploy import current_deployment

    project = flights_project
    small_spec(project, refit="after_gate")
    drop_month(project.landing, 1, sample=SAMPLE)
    drop_month(project.landing, 2, sample=SAMPLE)
    dags = build_dags(project)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    january, february = (r.batch_id for r in _store(project).batches.accepted())

    state, tasks = run_dag(dags["flights_delay__train"])
    assert state == "success", tasks
    assert tasks["gate"] == tasks["refit"] == tasks["promote"] == tasks["deploy"] == "success"
    client = tracking.configure(project.root)
    champion = client.get_model_version_by_alias("flights_delay", "champion")
    served = client.get_run(champion.run_id).data.tags
    evaluated_id = served["sluice.evaluated_run_id"]
    evaluated = client.get_run(evaluated_id).data.tags
    assert (evaluated["sluice.batches.trained_on"], evaluated["sluice.batches.held_out"]) == (january, february)
    assert served["sluice.batches.trained_on"] == f"{january},{february}", "the served model saw February"
    assert served["sluice.batches.held_out"] == ""
    assert champion.tags["sluice.evaluated_run_id"] == evaluated_id
    runs = project.root / "data" / "sluice" / "flights_delay" / "runs"
    (decision,) = [read_json(d) for d in runs.glob("*/decision.json")]
    assert decision["candidate"]["run_id"] == evaluated_id, "the gate record is the evaluated model's"
    assert decision["holdout"]["batches"] == [february]
    deployed = current_deployment(_store(project))
    assert deployed is not None and deployed["version"] == str(champion.version)


def test_reingesting_the_same_file_adds_nothing(flights_project: Project) -> None:
    from demo.producer import drop_month

    project = flights_project
    path = drop_month(project.landing, 1, sample=SAMPLE)
    content = path.read_bytes()
    dags = build_dags(project)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    before = _store(project).batches.ids()
    (project.landing / "flights_again.parquet").write_bytes(content)
    state, tasks = run_dag(dags["flights_delay__ingest"])
    assert state == "success"
    assert tasks["publish"] == "skipped", "no asset event when nothing new was accepted"
    assert _store(project).batches.ids() == before
    assert sorted(p.name for p in (project.landing / "_processed").iterdir()) == [
        "flights_2013-01.parquet",
        "flights_again.parquet",
    ]


def test_corrupt_file_and_bad_rows_get_the_outcomes_the_spec_asks_for(flights_project: Project) -> None:
    import pandas as pd

    from demo.producer import drop_month

    project = flights_project
    store = _store(project)
    dags = build_dags(project)
    # 1% bad rows: under max_quarantine_rate (2%): quarantined, the rest accepted.
    drop_month(project.landing, 1, bad_rows=30, sample=SAMPLE)
    state, tasks = run_dag(dags["flights_delay__ingest"])
    assert state == "success" and tasks["publish"] == "success"
    (accepted,) = store.batches.ids()
    record = store.batches.get(accepted).model_dump(mode="json")
    assert record["status"] == "accepted" and record["quarantined"] == 30
    quarantine = pd.read_parquet(local(store, store.keys.batch(accepted)) / "quarantine.parquet")
    assert len(quarantine) == 30 and (quarantine["distance"] < 1).all()
    assert set(quarantine["_sluice_failed_checks"]) == {"between:distance"}
    assert len(pd.read_parquet(local(store, store.keys.batch(accepted)) / "clean.parquet")) == SAMPLE - 30

    # 5% bad rows: over the limit, the whole batch is rejected and the run fails.
    drop_month(project.landing, 2, bad_rows=150, sample=SAMPLE)
    # A file that is not parquet at all.
    (project.landing / "broken.parquet").write_bytes(b"PAR1 this is not a parquet file")
    state, tasks = run_dag(dags["flights_delay__ingest"])
    assert state == "failed"
    assert tasks["check_batches"] == "failed" and tasks["publish"] == "skipped"
    outcomes = {store.batches.get(b).source_file: store.batches.get(b) for b in store.batches.ids()}
    assert outcomes["flights_2013-02.parquet"].status == "rejected"
    assert "exceeds max_quarantine_rate" in outcomes["flights_2013-02.parquet"].reason
    assert outcomes["broken.parquet"].status == "rejected"
    assert "unreadable" in outcomes["broken.parquet"].reason
    assert [r.batch_id for r in store.batches.accepted()] == [accepted]
