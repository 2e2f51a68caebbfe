"""The production-shape harness: every part starts, does what a user relies on, and stops.

One stack for the session (``conftest.py``; start-up takes minutes on two cores), shared with
the demo's production e2e. The teardown test runs last and checks that nothing is left.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from demo.production_stack import Stack
from demo.run_production import TERMINAL, AirflowApi, wait_for
from tests.production.conftest import Holder

pytestmark = pytest.mark.production

DAG_ID = "stack_hosts"
TASKS = 4
#: Libraries sluice's tasks use, which each Celery worker imports before forking its pool.
PRELOADED = ("evidently", "great_expectations", "mlflow", "sklearn")
#: Four parallel tasks, each sleeping a little: two workers of concurrency 2 (Celery prefetch 1,
#: late acks) can hold two each, so both must take some.
DAG_FILE = f'''
import os
import sys
import time

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def stack_hosts():
    @task
    def where() -> str:
        # Nothing here imports them: present means the worker preloaded them (celery_config).
        preloaded = ",".join(m for m in {PRELOADED!r} if m in sys.modules)
        time.sleep(5)
        return os.environ["SLUICE_CELERY_HOSTNAME"] + "|" + preloaded

    for i in range({TASKS}):
        where.override(task_id=f"where_{{i}}")()


stack_hosts()
'''

SPARK_JOB = """
import sys

from pyspark.sql import SparkSession

spark = (
    SparkSession.builder.master(sys.argv[1])
    .appName("prodstack-smoke")
    .config("spark.driver.host", "127.0.0.1")
    .config("spark.executor.memory", "512m")
    .config("spark.cores.max", "1")
    .getOrCreate()
)
total = spark.sparkContext.parallelize(range(1000), 2).map(lambda x: x * x).sum()
print(f"SUM={total}")
spark.stop()
"""


def test_dag_runs_on_both_celery_workers(stack: Stack) -> None:
    (stack.dags_folder / f"{DAG_ID}.py").write_text(DAG_FILE)
    api = AirflowApi(stack)
    wait_for(lambda: api.registered([DAG_ID]), 180, "the DAG processor to register the DAG")
    api.unpause(DAG_ID)
    run_id = api.trigger(DAG_ID)
    run = wait_for(lambda: next((r for r in api.runs(DAG_ID) if r["state"] in TERMINAL), None), 300, "the run")
    instances = api.task_instances(DAG_ID, run_id)
    assert run["state"] == "success", instances
    assert {ti["state"] for ti in instances} == {"success"}
    assert {ti["hostname"] for ti in instances} == set(stack.airflow.workers)
    xcom = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{{}}/xcomEntries/return_value"
    returned = [api.call("GET", xcom.format(ti["task_id"])).json()["value"].split("|") for ti in instances]
    assert {host for host, _ in returned} == set(stack.airflow.workers)
    # Each task started with the task libraries already imported, on both workers.
    assert [loaded for _, loaded in returned] == [",".join(PRELOADED)] * TASKS


def test_mlflow_artifact_lands_in_the_bucket(stack: Stack, tmp_path: Path) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=stack.mlflow.url)
    experiment = client.create_experiment("prodstack")
    run = client.create_run(experiment)
    note = tmp_path / "note.txt"
    note.write_text("stored through the tracking server")
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)

    keys = stack.s3.keys(stack.mlflow.artifact_bucket)
    assert [k for k in keys if k.endswith(f"{run.info.run_id}/artifacts/note.txt")], keys
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_pyspark_job_runs_on_the_cluster(stack: Stack, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SPARK_JOB))
    done = subprocess.run(
        [sys.executable, str(script), stack.spark.master],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**stack.airflow.env, "PYSPARK_PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"SUM={sum(x * x for x in range(1000))}" in done.stdout
    # Other tests of the session (the demo's feature jobs) may have run applications before.
    completed = [app for app in stack.spark.state()["completedapps"] if app["name"] == "prodstack-smoke"]
    assert [app["state"] for app in completed] == ["FINISHED"]


def test_teardown_leaves_nothing(holder: Holder) -> None:
    holder.check_teardown()
