"""The monitor DAG under dag.test() with real GX, Spark, MLflow and Evidently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sluice.services.storage import PipelineStore, read_json
from tests.conftest import Project
from tests.integration.conftest import build_dags, run_dag
from tests.smtp_server import MailCatcher, body_text
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
    assert tasks == {"compute_drift": "success", "publish_drift": "skipped", "alert_drift": "skipped"}
    result = _xcom("flights_delay__monitor", "compute_drift")
    assert result["status"] == "no_reference" and result["drift_detected"] is False
    assert "no champion" in result["reason"]
    assert len(_drift_events()) == before


def test_a_december_batch_drifts_from_the_january_champion(flights_project: Project, smtp_server: MailCatcher) -> None:
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
    (january,) = store.batches.ids()

    drop_month(project.landing, 12, sample=SAMPLE)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    december = next(b for b in store.batches.ids() if b != january)
    before = len(_drift_events())
    state, tasks = run_dag(dags["flights_delay__monitor"])

    # Drift is news, not a failure: the run is green, the drift event went out and the alert was emailed.
    assert state == "success", tasks
    assert tasks == {"compute_drift": "success", "publish_drift": "success", "alert_drift": "success"}
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
    assert read_json(local(store, store.keys.monitor(_run_id())) / "drift.json")["drift_share"] == result["drift_share"]
    assert store.batches.get(december).monitored_by == _run_id()

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

    # The drift alert email, sent by alert_drift itself, with the numbers and the report.
    (mail,) = smtp_server.wait_for(1)
    assert mail["X-Sluice-Alert"] == "drift" and mail["To"] == "ml-oncall@example.com"
    assert mail["Subject"].startswith("[sluice] flights_delay: drift detected, ")
    body = body_text(mail)
    assert f"champion v{champion.version}" in body and december in body and "dest" in body
    assert f"http://localhost:5000/#/runs/{result['mlflow_run_id']}" in body
    assert "/tasks/alert_drift" in body and "<h3>Error</h3>" not in body
    assert _xcom("flights_delay__monitor", "alert_drift")["subject"] == mail["Subject"]

    # A batch below monitoring.drift.min_rows (1,000) gets no verdict: no event, no email, a green run.
    drop_month(project.landing, 11, sample=400)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    november = next(b for b in store.batches.ids() if b not in (january, december))
    state, tasks = run_dag(dags["flights_delay__monitor"])
    assert state == "success", tasks
    assert tasks == {"compute_drift": "success", "publish_drift": "skipped", "alert_drift": "skipped"}
    small = _xcom("flights_delay__monitor", "compute_drift")
    assert small["status"] == "not_enough_data" and small["drift_detected"] is False
    assert small["batches"] == [november] and small["rows"] == {"reference": SAMPLE, "current": 400}
    assert small["reason"].startswith("not enough data: 400 new rows < monitoring.drift.min_rows 1000")
    assert len(_drift_events()) == before + 1 and len(smtp_server.messages) == 1
    record = store.batches.get(november)
    assert record.drift_status == "not_enough_data" and record.monitored_by is None, "compared again with the next"
    monitor_run = client.get_run(small["mlflow_run_id"])
    assert monitor_run.data.tags["sluice.drift.verdict"] == "not enough data"
    assert monitor_run.data.metrics["rows_current"] == 400 and "drift_share" not in monitor_run.data.metrics
    assert len(client.get_metric_history(champion.run_id, "drift_share")) == 1, "no point without a verdict"


def _run_id() -> str:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == "flights_delay__monitor").order_by(DagRun.id.desc()).first()
        assert run is not None
        return str(run.run_id)
