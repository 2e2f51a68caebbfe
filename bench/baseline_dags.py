"""Baseline for the parse-time benchmark: the same three DAGs and tasks, hand-written.

No spec, no pydantic, no plan: what a careful Airflow user would write for the demo
pipeline, alert emails included (the SMTP provider's notifier on the same four tasks).
sluice's DAG file is measured against this in the same run.
"""

import itertools
from datetime import datetime

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.sdk import DAG, Asset


def _noop(**_: object) -> None:
    return None


def _alert(kind: str) -> SmtpNotifier:
    return SmtpNotifier(to="ml-oncall@example.com", subject=f"flights_delay: {kind} failed", html_content="{{ ti }}")


def _chain(dag: DAG, task_ids: tuple[str, ...], alerts: tuple[str, ...] = ()) -> list[PythonOperator]:
    ops = []
    for task_id in task_ids:
        extra = {"on_failure_callback": [_alert(task_id)]} if task_id in alerts else {}
        ops.append(PythonOperator(task_id=task_id, python_callable=_noop, dag=dag, **extra))
    for upstream, downstream in itertools.pairwise(ops):
        upstream >> downstream
    return ops


batches = Asset("sluice://flights_delay/batches")
drift = Asset("sluice://flights_delay/drift")
common = {"start_date": datetime(2024, 1, 1), "catchup": False, "max_active_runs": 1, "tags": ["baseline"]}
with DAG("flights_delay__ingest", schedule="@continuous", **common) as ingest:
    wait = FileSensor(task_id="wait_for_files", filepath="/tmp/landing/*.parquet", deferrable=True, poke_interval=5)
    land = PythonOperator(task_id="land", python_callable=_noop)
    validate = PythonOperator(task_id="validate", python_callable=_noop)
    publish = PythonOperator(task_id="publish", python_callable=_noop, outlets=[batches])
    confirm = PythonOperator(task_id="confirm_published", python_callable=_noop)
    check = PythonOperator(task_id="check_batches", python_callable=_noop, on_failure_callback=[_alert("validation")])
    wait >> land >> validate >> [publish, check]
    publish >> confirm

with DAG("flights_delay__train", schedule=drift, **common) as train:
    _chain(
        train,
        ("check_trigger", "build_features", "train", "evaluate", "gate", "promote", "deploy"),
        alerts=("gate", "deploy"),
    )

with DAG("flights_delay__monitor", schedule=batches, **common) as monitor:
    compute = PythonOperator(task_id="compute_drift", python_callable=_noop)
    publish_drift = PythonOperator(task_id="publish_drift", python_callable=_noop, outlets=[drift])
    check_drift = PythonOperator(task_id="check_drift", python_callable=_noop, on_failure_callback=[_alert("drift")])
    compute >> [publish_drift, check_drift]
