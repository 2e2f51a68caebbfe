"""The production-shape harness: every part starts, does what a user relies on, and stops.

One stack for the session (``conftest.py``; start-up takes minutes on two cores), shared with
the demo's production e2e. The teardown test runs last and checks that nothing is left.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests
import tenacity

from demo.production_stack import Stack
from tests.production.conftest import Holder

pytestmark = pytest.mark.production

DAG_ID = "stack_hosts"
TASKS = 4
#: Four parallel tasks, each sleeping a little: two workers of concurrency 2 (Celery prefetch 1,
#: late acks) can hold two each, so both must take some.
DAG_FILE = f'''
import os
import time

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def stack_hosts():
    @task
    def where() -> str:
        time.sleep(5)
        return os.environ["SLUICE_CELERY_HOSTNAME"]

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


def _get(session: requests.Session, url: str) -> requests.Response:
    """GET that waits out a busy API server (one uvicorn worker on two shared cores)."""
    for attempt in tenacity.Retrying(
        stop=tenacity.stop_after_attempt(5),
        wait=tenacity.wait_fixed(2),
        retry=tenacity.retry_if_exception_type((requests.ConnectionError, requests.Timeout)),
        reraise=True,
    ):
        with attempt:
            return session.get(url, timeout=60)
    raise AssertionError("unreachable")


def test_dag_runs_on_both_celery_workers(stack: Stack) -> None:
    (stack.dags_folder / f"{DAG_ID}.py").write_text(DAG_FILE)
    api = stack.airflow.api_url
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {stack.airflow.token()}"
    deadline = time.monotonic() + 180
    while _get(session, f"{api}/api/v2/dags/{DAG_ID}").status_code != 200:
        assert time.monotonic() < deadline, "the DAG processor never registered the DAG"
        time.sleep(2)
    session.patch(f"{api}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, timeout=60).raise_for_status()
    resp = session.post(f"{api}/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None}, timeout=30)
    resp.raise_for_status()
    run_id = resp.json()["dag_run_id"]
    deadline = time.monotonic() + 300
    while (state := _get(session, f"{api}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]) not in (
        "success",
        "failed",
    ):
        assert time.monotonic() < deadline, f"the run is still {state}"
        time.sleep(2)
    tis = _get(session, f"{api}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances").json()
    assert state == "success", tis
    instances = tis["task_instances"]
    assert {ti["state"] for ti in instances} == {"success"}
    assert {ti["hostname"] for ti in instances} == set(stack.airflow.workers)
    run_url = f"{api}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}"
    returned = {
        _get(session, f"{run_url}/taskInstances/{ti['task_id']}/xcomEntries/return_value").json()["value"]
        for ti in instances
    }
    assert returned == set(stack.airflow.workers)


def test_mlflow_artifact_lands_in_the_bucket(stack: Stack, tmp_path: Path) -> None:
    import boto3
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=stack.mlflow.url)
    experiment = client.create_experiment("prodstack")
    run = client.create_run(experiment)
    note = tmp_path / "note.txt"
    note.write_text("stored through the tracking server")
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)

    s3 = boto3.client(
        "s3",
        endpoint_url=stack.s3.endpoint,
        aws_access_key_id=stack.s3.key,
        aws_secret_access_key=stack.s3.secret,
        region_name=stack.s3.region,
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.mlflow.artifact_bucket).get("Contents", [])]
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
