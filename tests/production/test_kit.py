"""The production kit brings the whole shape up from its template, on ports a user chose, and down again.

Not the session's shared stack (``conftest.py``): this test is what a team does by hand with
``./sluice production init|up|status|down``, through the command line, on a kit of its own.
It runs before the shared stack starts (``conftest.py`` orders it first), so the two never
run at once on a small machine.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from sluice.airflow.runtime.standalone import free_port
from sluice.production import commands
from sluice.production.envfile import load
from sluice.production.parts import s3_client
from sluice.production.supervise import leftovers, sessions, tail

pytestmark = [pytest.mark.production, pytest.mark.timeout(3600)]

#: Every port variable of the template, each given a free port (as a user picks theirs).
PORT_VARIABLES = (
    "SLUICE_KIT_POSTGRES_PORT",
    "SLUICE_KIT_REDIS_PORT",
    "SLUICE_KIT_S3_PORT",
    "SLUICE_KIT_MLFLOW_PORT",
    "SLUICE_KIT_SPARK_MASTER_PORT",
    "SLUICE_KIT_SPARK_UI_PORT",
    "SLUICE_KIT_SPARK_WORKER_UI_PORT",
    "SLUICE_KIT_AIRFLOW_PORT",
    "SLUICE_KIT_TRIGGER_LOG_PORT",
    "SLUICE_KIT_FLOWER_PORT",
)
PARTS = [
    "postgres",
    "redis",
    "s3",
    "mlflow",
    "spark-master",
    "spark-worker",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker-w1",
    "airflow-worker-w2",
    "flower",
]
DAG_ID = "kit_smoke"
DAG_FILE = f'''
import os

import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{DAG_ID}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def kit_smoke():
    @task
    def where() -> str:
        return os.environ["SLUICE_CELERY_HOSTNAME"]

    where()


kit_smoke()
'''


def chosen_ports() -> dict[str, int]:
    """A distinct free port for every port variable, and two for the workers' log servers."""
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(PORT_VARIABLES) + 2:
        ports = {name: free_port() for name in (*PORT_VARIABLES, "w1", "w2")}
    return ports


def sluice(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``sluice ARGS`` as a user runs it (``./sluice`` is this interpreter's ``sluice`` command)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_KIT")}
    cmd = [sys.executable, "-m", "sluice.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def token(url: str, password: str) -> str:
    """A JWT of the REST API for ``admin`` with ``password``."""
    resp = requests.post(f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except requests.RequestException:
            pass
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


#: What a worker's log says about its tasks, among the libraries' start-up chatter.
WORKER_NEWS = ("execute_workload", "Starting call", "Workload finished", "[error", "[warning", "Traceback")


def diagnosis(api: requests.Session, run: str, instances: list[dict[str, Any]], state: Path) -> str:
    """What a failed run left to read: each task instance and its log, the workers' news, the scheduler's log.

    The state folder is under the session's temporary folder, removed when the session ends.
    """
    lines = []
    for ti in instances:
        lines.append(json.dumps({k: ti.get(k) for k in ("task_id", "state", "hostname", "try_number", "queue")}))
        for attempt in range(1, int(ti.get("try_number") or 1) + 1):
            log = api.get(f"{run}/taskInstances/{ti['task_id']}/logs/{attempt}", timeout=60)
            lines.append(f"--- task log, try {attempt} ({log.status_code}):\n{log.text[-6000:]}")
    for part in ("airflow-worker-w1", "airflow-worker-w2"):
        # A task that never started has no task log: its worker says why (a timed-out Execution API call...).
        log = (state / "logs" / f"{part}.log").read_text(errors="replace").splitlines()
        said = [line for line in log if any(word in line for word in WORKER_NEWS)]
        lines.append(f"--- {part}.log, its lines about tasks and errors:\n" + "\n".join(said[-30:]))
    lines.append(f"--- the end of airflow-scheduler.log:\n{tail(state / 'logs' / 'airflow-scheduler.log', 60)}")
    return "\n".join(lines)


def run_dag(url: str, password: str, state: Path) -> list[dict[str, Any]]:
    """Unpause and trigger the smoke DAG through the REST API; its task instances once it finished."""
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token(url, password)}"
    base = f"{url}/api/v2/dags/{DAG_ID}"
    wait(lambda: api.get(base, timeout=30).status_code == 200, 300, "the DAG processor to register the DAG")
    api.patch(base, json={"is_paused": False}, timeout=30).raise_for_status()
    resp = api.post(f"{base}/dagRuns", json={"logical_date": None}, timeout=30)
    resp.raise_for_status()
    run = f"{base}/dagRuns/{resp.json()['dag_run_id']}"
    finished = wait(
        lambda: (s := api.get(run, timeout=30).json()["state"]) in ("success", "failed") and s, 600, "the run"
    )
    instances = list(api.get(f"{run}/taskInstances", timeout=30).json()["task_instances"])
    assert finished == "success", diagnosis(api, run, instances, state)
    return instances


def check_every_part_answers(env_file: Path) -> None:
    """What a user opens after ``up``: each address answers, with the credentials of the file."""
    kit = load(env_file)
    airflow = f"http://127.0.0.1:{kit.get('SLUICE_KIT_AIRFLOW_PORT')}"
    health = requests.get(f"{airflow}/api/v2/monitor/health", timeout=30).json()
    assert {health[c]["status"] for c in ("metadatabase", "scheduler", "dag_processor", "triggerer")} == {"healthy"}
    assert requests.get(f"{kit.get('MLFLOW_TRACKING_URI')}/health", timeout=30).status_code == 200
    buckets = {b["Name"] for b in s3_client(kit).list_buckets()["Buckets"]}
    assert buckets >= {"sluice", "mlflow"}
    spark = requests.get(f"http://127.0.0.1:{kit.get('SLUICE_KIT_SPARK_UI_PORT')}/json/", timeout=30).json()
    assert spark["status"] == "ALIVE" and [w["state"] for w in spark["workers"]] == ["ALIVE"]
    assert spark["cores"] == 2
    workers = commands.celery_workers(kit.get("AIRFLOW__CELERY__BROKER_URL"))
    assert workers == {f"w1@{socket.gethostname()}", f"w2@{socket.gethostname()}"}
    flower = f"http://127.0.0.1:{kit.get('SLUICE_KIT_FLOWER_PORT')}"
    assert requests.get(f"{flower}/healthcheck", timeout=30).text == "OK"
    assert requests.get(f"{flower}/workers", timeout=30).status_code == 401, "Flower is behind the admin's password"
    # An MLflow run's artifact goes through the server into the bucket (its database role and S3 keys work).
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=kit.get("MLFLOW_TRACKING_URI"))
    run = client.create_run(client.create_experiment("kit"))
    note = kit.state / "note.txt"
    note.write_text("through the tracking server")
    client.log_artifact(run.info.run_id, str(note))
    keys = [o["Key"] for o in s3_client(kit).list_objects_v2(Bucket="mlflow").get("Contents", [])]
    assert [k for k in keys if k.endswith(f"{run.info.run_id}/artifacts/note.txt")], keys


def test_kit_starts_every_part_on_chosen_ports_and_stops_them_all(tmp_path: Path) -> None:
    ports = chosen_ports()
    settings = [f"{name}={ports[name]}" for name in PORT_VARIABLES]
    settings.append(f"SLUICE_KIT_WORKER_LOG_PORTS={ports['w1']},{ports['w2']}")
    folder = tmp_path / "kit"
    made = sluice("production", "init", str(folder), *[a for s in settings for a in ("--set", s)])
    assert made.returncode == 0, made.stderr
    env_file = folder / "production.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600, "the file holds secrets"
    text = env_file.read_text()
    assert f"SLUICE_KIT_AIRFLOW_PORT={ports['SLUICE_KIT_AIRFLOW_PORT']}" in text
    assert re.search(r"^AIRFLOW__CORE__FERNET_KEY=\S{44}$", text, re.M), "a generated Fernet key"
    (folder / "dags" / f"{DAG_ID}.py").write_text(DAG_FILE)

    started = time.monotonic()
    up = sluice("production", "up", "--env", str(env_file), timeout=1800)
    print(f"kit up in {time.monotonic() - started:.0f}s:\n{up.stdout}\n{up.stderr}")
    try:
        assert up.returncode == 0, up.stderr
        password = load(env_file).get("SLUICE_KIT_ADMIN_PASSWORD")
        airflow = f"http://127.0.0.1:{ports['SLUICE_KIT_AIRFLOW_PORT']}"
        assert f"{airflow}  (admin / {password})" in up.stdout, "where to look: the UI and its login"
        assert f"production down --env {env_file}" in up.stdout

        status = sluice("production", "status", "--env", str(env_file))
        assert status.returncode == 0, status.stdout
        states = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()}
        assert states == dict.fromkeys(PARTS, "running")
        check_every_part_answers(env_file)
        instances = run_dag(airflow, password, folder / "state")
        assert {ti["hostname"] for ti in instances} <= {f"w1@{socket.gethostname()}", f"w2@{socket.gethostname()}"}

        # Twice is a no-op: nothing started again.
        pids = {p.stem: json.loads(p.read_text())["pid"] for p in (folder / "state" / "run").glob("*.json")}
        again = sluice("production", "up", "--env", str(env_file), timeout=300)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already running") == len(PARTS)
        assert {p.stem: json.loads(p.read_text())["pid"] for p in (folder / "state" / "run").glob("*.json")} == pids

        # Another kit on a port this one holds is refused before anything starts, naming the variable.
        other = tmp_path / "other"
        taken = f"SLUICE_KIT_AIRFLOW_PORT={ports['SLUICE_KIT_AIRFLOW_PORT']}"
        assert sluice("production", "init", str(other), "--set", taken).returncode == 0
        refused = sluice("production", "up", "--env", str(other / "production.env"), "--only", "airflow-api-server")
        assert refused.returncode == 2
        assert "nothing started" in refused.stderr and "SLUICE_KIT_AIRFLOW_PORT" in refused.stderr
        assert not (other / "state" / "run").exists()
    finally:
        kit = load(env_file)
        leaders = sessions(kit)
        down = sluice("production", "down", "--env", str(env_file), timeout=900)
        print(down.stdout, down.stderr)
    assert down.returncode == 0, down.stderr
    assert "nothing left running" in down.stdout
    assert leftovers(kit, leaders) == []
    after = sluice("production", "status", "--env", str(env_file))
    assert after.returncode == 3
    assert {line.split()[1] for line in after.stdout.splitlines()} == {"stopped"}
