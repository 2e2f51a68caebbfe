"""Infrastructure failures send an alert with the error and the next step, once per hour, not per run."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.smtp_server import MailCatcher, body_text

pytestmark = pytest.mark.integration


PROBE_DAG = """
from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from sluice.airflow.notifications.alerts import AlertNotifier


def storage_down():
    raise OSError(28, "No space left on device", "/data/sluice/{pipeline}/batches")


with DAG("{pipeline}__ingest", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    PythonOperator(
        task_id="land",
        python_callable=storage_down,
        retries=0,
        on_failure_callback=AlertNotifier(alert="failure", pipeline="{pipeline}", to=["oncall@example.com"]),
    )
"""


def _land_dag(pipeline: str, tmp_path: Path) -> Any:
    """A DAG whose land task fails as full storage would, with sluice's failure alert."""
    from airflow.dag_processing.dagbag import DagBag

    # dag.test() runs only DAGs it can serialize from a file in the DAG folder.
    path = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{pipeline}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PROBE_DAG.replace("{pipeline}", pipeline))
    return DagBag(dag_folder=str(path)).dags[f"{pipeline}__ingest"]


def test_a_failing_land_alerts_once_with_the_error_and_the_next_step_then_again_after_the_window(
    airflow_db: Path, smtp_server: MailCatcher, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sluice.plan import build_plan
    from sluice.spec.loader import load_spec
    from tests.conftest import DEMO_SPEC

    # Every step of the real plan but the sensor carries an alert; land's is the failure alert.
    plan = build_plan(load_spec(DEMO_SPEC))
    alerts = {s.task_id: s.alert for d in plan.dags for s in d.steps}
    assert alerts["land"] == "failure" and alerts["train"] == "failure" and alerts["wait_for_files"] is None
    assert all(kind for task, kind in alerts.items() if task != "wait_for_files")

    # Its own pipeline name: the last alert is kept in an Airflow Variable of the session's database.
    pipeline = f"alerts_probe_{uuid.uuid4().hex[:8]}"
    dag = _land_dag(pipeline, tmp_path)
    for _ in range(3):  # a continuous DAG whose storage is down fails run after run
        assert str(dag.test().state) == "failed"
    (mail,) = smtp_server.wait_for(1)
    assert mail["Subject"] == (
        f"[sluice] {pipeline}: land failed: [Errno 28] No space left on device: '/data/sluice/{pipeline}/batches'"
    )
    assert mail["X-Sluice-Alert"] == "failure"
    body = body_text(mail)
    assert "No space left on device" in body and "Files stay in the landing folder until they land" in body
    assert len(smtp_server.messages) == 1, "the same failure is alerted once per window, not once per run"

    monkeypatch.setenv("SLUICE_ALERT_REPEAT_MINUTES", "0")
    assert str(dag.test().state) == "failed"
    assert len(smtp_server.wait_for(2)) == 2, "after the window it is sent again"
    (Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{pipeline}.py").unlink()
