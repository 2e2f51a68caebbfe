"""The monitor DAG under dag.test() with real GX, Spark, MLflow and Evidently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sluice.services.storage import PipelineStore, read_json
from tests.conftest import Project
from tests.integration.conftest import build_dags, run_dag
from tests.storage import local

pytestmark = pytest.mark.integration
SAMPLE = 3000
DRIFT_URI = "sluice://flights_delay/drift"


def _store(project: Project) -> PipelineStore:
    return PipelineStore(project.root / "data" / "sluice", "flights_delay")


def _xcom(dag_id: str, task_id: str) -> Any:
    from airflow.models import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        assert run is not None
        value = (
            session.query(XComModel)
            .filter(XComModel.dag_id == dag_id, XComModel.run_id == run.run_id, XComModel.task_id == task_id)
            .first()
        )
        assert value is not None, f"no XCom from {task_id}"
        return XComModel.deserialize_value(value)


def _drift_events() -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == DRIFT_URI)
            .all()
        )
        return [dict(r.extra or {}) for r in rows]


def test_without_a_champion_the_monitor_records_no_reference(flights_project: Project) -> None:
    from demo.producer import drop_month

    project = flights_project
    drop_month(project.landing, 1, sample=SAMPLE)
    dags = build_dags(project)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    before = len(_drift_events())

    state, tasks = run_dag(dags["flights_delay__monitor"])

    assert state == "success", tasks
    assert tasks == {"compute_drift": "success", "publish_drift": "skipped", "check_drift": "success"}
    result = _xcom("flights_delay__monitor", "compute_drift")
    assert result["status"] == "no_reference" and result["drift_detected"] is False
    assert "no champion" in result["reason"]
    assert len(_drift_events()) == before


def test_a_december_batch_drifts_from_the_january_champion(flights_project: Project) -> None:
    from demo.producer import drop_month
    from sluice.services import tracking

    project = flights_project
    store = _store(project)
    drop_month(project.landing, 1, sample=SAMPLE)
    dags = build_dags(project)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    assert run_dag(dags["flights_delay__train"])[0] == "success"
    client = tracking.configure(project.root)
    champion = client.get_model_version_by_alias("flights_delay", "champion")
    (january,) = store.batch_ids()

    drop_month(project.landing, 12, sample=SAMPLE)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    december = next(b for b in store.batch_ids() if b != january)
    before = len(_drift_events())
    state, tasks = run_dag(dags["flights_delay__monitor"])

    # Drift fails the run at check_drift (the alert), after the drift event went out.
    assert state == "failed"
    assert tasks == {"compute_drift": "success", "publish_drift": "success", "check_drift": "failed"}
    result = _xcom("flights_delay__monitor", "compute_drift")
    assert result["status"] == "compared" and result["drift_detected"] is True
    assert result["batches"] == [december], "the champion's own batch is the reference, not new data"
    assert result["reference_batches"] == [january]
    assert result["champion_version"] == str(champion.version)
    assert result["threshold"] == 0.15 and result["drift_share"] >= 0.15
    columns = {c["column"]: c for c in result["columns"]}
    assert set(columns) == {"sched_dep_time", "sched_arr_time", "carrier", "origin", "dest", "distance"}
    assert all({"method", "score", "threshold", "drifted"} <= set(c) for c in columns.values())
    assert columns["dest"]["drifted"]

    # Files under the pipeline storage.
    report = result["report_path"]
    assert report.endswith("report.html") and "dest" in Path(report).read_text()
    assert read_json(local(store, store.monitor_key(_run_id())) / "drift.json")["drift_share"] == result["drift_share"]
    assert store.batch_record(december).monitored_by == _run_id()

    # The asset event carries the numbers.
    events = _drift_events()
    assert len(events) == before + 1
    extra = events[-1]
    assert extra["drift_share"] == result["drift_share"] and extra["threshold"] == 0.15
    assert "dest" in extra["drifted_columns"] and extra["batches"] == [december]

    # MLflow: a monitoring run with the report, and the series on the champion's run.
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags["sluice.role"] == "monitor"
    assert run.data.tags["sluice.champion_version"] == str(champion.version)
    assert run.data.metrics["drift_share"] == pytest.approx(result["drift_share"])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"report.html", "drift.json"}
    history = client.get_metric_history(champion.run_id, "drift_share")
    assert [m.value for m in history] == [pytest.approx(result["drift_share"])]


def _run_id() -> str:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == "flights_delay__monitor").order_by(DagRun.id.desc()).first()
        assert run is not None
        return str(run.run_id)
