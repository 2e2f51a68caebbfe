"""Baseline for the parse-time benchmark: the same two DAGs and tasks, hand-written.

No spec, no pydantic, no plan: what a careful Airflow user would write for the demo
pipeline. sluice's DAG file is measured against this in the same run.
"""

from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.sdk import DAG, Asset


def _noop(**_: object) -> None:
    return None


batches = Asset("sluice://flights_delay/batches")
with DAG(
    "flights_delay__ingest",
    schedule="@continuous",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["baseline"],
) as ingest:
    wait = FileSensor(task_id="wait_for_files", filepath="/tmp/landing/*.parquet", deferrable=True, poke_interval=5)
    land = PythonOperator(task_id="land", python_callable=_noop)
    validate = PythonOperator(task_id="validate", python_callable=_noop)
    publish = PythonOperator(task_id="publish", python_callable=_noop, outlets=[batches])
    check = PythonOperator(task_id="check_batches", python_callable=_noop)
    wait >> land >> validate >> [publish, check]

with DAG(
    "flights_delay__train",
    schedule=[batches],
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["baseline"],
) as train:
    previous = None
    for task_id in ("build_features", "train", "evaluate", "gate", "promote", "deploy"):
        op = PythonOperator(task_id=task_id, python_callable=_noop)
        if previous is not None:
            previous >> op
        previous = op
