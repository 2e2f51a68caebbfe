"""The scheduler, then the whole embedded Airflow, killed (SIGKILL) in the middle of a train run.

Before: after a restart one try was lost to the orphan reset and the next to a start-up race
(tasks ran before the API server answered: ``httpx.ConnectError``, a log of one line), so two
crashes failed the run with nothing to read. Now the launcher starts the API server first and
restarts a component that dies, and the run recovers within its retries.

One run of the real scheduler, DAG processor, triggerer and API server (the launcher of
``sluice airflow``) on the test session's database: the train task is held mid-train (its
MLflow run open) while the scheduler is killed; then the deploy task is held once its new
model server is up while every Airflow process and the task itself are killed, and Airflow
is started again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from sluice.services.storage import PipelineStore
from tests.conftest import Project, stop_model_servers
from tests.standalone import processes_of, session_env

pytestmark = [pytest.mark.integration, pytest.mark.faults]
TRAIN = "flights_delay__train"
HOLDS = ("train.run_started", "deploy.server_ready")


def _held(folder: Path, name: str, server: Any) -> int:
    from sluice.airflow.runtime import standalone

    path = folder / f"{name}.held"
    standalone.wait_for(lambda: path.exists(), 900, f"a task to reach {name}", server, interval=1)
    return int(path.read_text())


def _component(launcher: int, name: str) -> psutil.Process:
    for child in psutil.Process(launcher).children():
        with contextlib.suppress(psutil.Error):
            if f"airflow {name}" in " ".join(child.cmdline()).replace("_", "-"):
                return child
    raise AssertionError(f"no {name} under the launcher")


def _kill_all(launcher: int, task_pid: int) -> bool:
    """SIGKILL the launcher's process group and the held task; True if the task was outside the group."""
    outside = os.getpgid(task_pid) != launcher
    family = psutil.Process(launcher).children(recursive=True)
    os.killpg(launcher, signal.SIGKILL)
    for p in [*family, psutil.Process(task_pid)]:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(family, timeout=30)
    return outside


def _attempt_logs(home: Path, run_id: str, task: str) -> list[str]:
    folder = home / "logs" / f"dag_id={TRAIN}" / f"run_id={run_id}" / f"task_id={task}"
    return [p.read_text(errors="replace") for p in sorted(folder.glob("attempt=*.log"))]


def test_killing_the_scheduler_then_all_of_airflow_mid_run_recovers_within_retries(
    flights_project: Project, tmp_path: Path
) -> None:
    from demo.producer import drop_month
    from sluice.airflow.runtime import standalone
    from sluice.airflow.runtime.home import airflow
    from sluice.services import tracking
    from sluice.spec.loader import load_spec
    from sluice.steps.deploy import current_deployment, local_serving
    from sluice.steps.ingest import land_new_files
    from sluice.steps.validate import validate_batch

    project = flights_project
    loaded = load_spec(project.dags / "flights_delay.pipeline.yaml")
    store = PipelineStore(project.root / "data" / "sluice", "flights_delay")
    drop_month(project.landing, 1, sample=3000)
    (batch,) = land_new_files(str(project.landing / "*.parquet"), store, "ingest-1").new
    assert validate_batch(store, batch, loaded.spec.validation, "parquet").status == "accepted"

    holds = tmp_path / "holds"
    env = session_env(project.root)
    env.update(
        MLFLOW_TRACKING_URI=os.environ["MLFLOW_TRACKING_URI"],
        SLUICE_TEST_FAULTS="1",  # isolated_env drops SLUICE_* variables: the fault switch goes back in
        SLUICE_FAULT_HOLD=",".join(HOLDS),
        SLUICE_FAULT_ONCE=str(holds),
        # The embedded default is 120 s; a shorter wait keeps the test short.
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="45",
    )
    home = Path(env["AIRFLOW_HOME"])
    log_file = tmp_path / "airflow.log"
    server = standalone.start(env, log_file, project.root)
    try:
        standalone.wait_for(lambda: standalone.registered([TRAIN]), 300, "the train DAG", server, interval=1)
        airflow(["pools", "set", "sluice_spark", "1", "Spark jobs"], env)  # as `make setup` makes it
        airflow(["dags", "unpause", TRAIN], env)
        since = time.time() - 1
        airflow(["dags", "trigger", TRAIN], env)

        # 1. The scheduler dies while the train task is inside its MLflow run.
        _held(holds, "train.run_started", server)
        t0 = time.monotonic()
        scheduler = _component(server.pid, "scheduler")
        scheduler.kill()
        standalone.wait_for(
            lambda: "scheduler exited with code -9; restarting it" in log_file.read_text(), 60, "a restart", server
        )
        (holds / "train.run_started.release").touch()

        # 2. Everything dies (as with a lost machine) once the new model server is up.
        task_pid = _held(holds, "deploy.server_ready", server)
        t1 = time.monotonic()
        outside = _kill_all(server.pid, task_pid)
        server = standalone.start(env, log_file, project.root)
        (holds / "deploy.server_ready.release").touch()

        def finished() -> dict[str, Any] | None:
            runs = standalone.dag_runs(TRAIN, since)
            return runs[0] if runs and runs[0]["state"] in standalone.TERMINAL else None

        run = standalone.wait_for(finished, 900, "the train run to finish after the restart", server, interval=2)
        t2 = time.monotonic()
        print(
            f"scheduler kill -> deploy held: {t1 - t0:.0f}s; all of Airflow killed -> run {run['state']}: "
            f"{t2 - t1:.0f}s; the task was {'outside' if outside else 'inside'} the launcher's process group"
        )
    finally:
        standalone.stop(server)
    log = log_file.read_text()
    assert run["state"] == "success", f"{run['tasks']}\n{log[-3000:]}"

    # Within the retries (2 each), every try left a log, and the finishing try a whole one.
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        query = session.query(TaskInstance).filter(TaskInstance.dag_id == TRAIN, TaskInstance.run_id == run["run_id"])
        tries = {ti.task_id: ti.try_number for ti in query}
    print(f"tries after the kills: {tries}")
    assert tries["train"] <= 3 and tries["deploy"] <= 3, tries
    for task in ("train", "deploy"):
        logs = _attempt_logs(home, run["run_id"], task)
        assert logs, f"no log for {task}"
        for text in logs:
            # A try the kill cut short keeps only what it wrote before it died, but never an error of
            # the log shipping itself (the API server was up before any task ran).
            assert text.strip(), f"an empty log for a try of {task}"
            assert "ConnectError" not in text, text[-2000:]
        assert len(logs[-1].splitlines()) > 3, f"the try of {task} that finished left no readable log: {logs[-1]}"

    # The launcher started the API server before anything that runs tasks, both times.
    starts = [line for line in log.splitlines() if line.startswith("sluice ") and "started " in line]
    assert [s.split("started ")[1].split(" ")[0] for s in starts][:4] == [
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
    ]
    assert log.count("the API server answers; starting the components that run tasks") == 2

    # No MLflow run left RUNNING; one finished candidate for this Airflow run.
    client = tracking.configure(project.root)
    experiment = client.get_experiment_by_name("flights_delay")
    found = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`sluice.airflow_run_id` = '{run['run_id']}'"
    )
    statuses = [r.info.status for r in found]
    assert "RUNNING" not in statuses, statuses
    assert statuses.count("FINISHED") >= 1

    # The champion, the deploy record and what answers on the port agree; one server.
    champion = client.get_model_version_by_alias("flights_delay", "champion")
    cfg = loaded.spec.deployment.local
    serving = local_serving(store, cfg.host, cfg.port)
    record = current_deployment(store)
    assert record is not None and str(record["version"]) == str(champion.version)
    assert serving.answering == str(champion.version)
    assert serving.unrecorded == [], serving.unrecorded

    stop_model_servers(project.root)
    assert processes_of(project.root) == {}, "Airflow or a model server was left running"
