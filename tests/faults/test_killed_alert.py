"""A task killed (SIGKILL) on its last try still sends an alert; a kill on a try that is retried sends none.

Before: a killed task process runs no code, so its ``on_failure_callback`` (the alert) never
ran, and on Airflow 3.3 nothing ran it for it: the task's supervisor survived, reported the
failure, and the run failed without an email. Now the DAG-level
:class:`~sluice.airflow.notifications.alerts.KilledTaskWatch` finds the failed task whose alert never ran
and sends the ``killed`` alert, with the try and the signal.

One run of the real embedded Airflow (API server, scheduler, DAG processor; the launcher of
``sluice airflow``) on the test session's database, with a probe DAG whose task holds until
the test kills its process with SIGKILL, as the out-of-memory killer does.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project
from tests.smtp_server import MailCatcher, body_text
from tests.standalone import session_env

pytestmark = [pytest.mark.integration, pytest.mark.faults]

PROBE_DAG = """
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from sluice.airflow.notifications.alerts import AlertNotifier, KilledTaskWatch

HOLDS = Path(@HOLDS@)
TO = ["oncall@example.com"]


def hold(**context):
    # The task process says where it is, then waits to be killed.
    pid = HOLDS / f"try-{context['ti'].try_number}.tmp"
    pid.write_text(str(os.getpid()))
    pid.rename(pid.with_suffix(".pid"))
    time.sleep(900)


with DAG(
    "@DAG@",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    on_failure_callback=KilledTaskWatch(pipeline="killprobe", to=TO),
) as dag:
    PythonOperator(
        task_id="train",
        python_callable=hold,
        retries=1,
        retry_delay=timedelta(seconds=1),
        on_failure_callback=AlertNotifier(alert="failure", pipeline="killprobe", to=TO),
    )
"""


def _kill_try(holds: Path, number: int, server: Any) -> None:
    from sluice.airflow.runtime import standalone

    path = holds / f"try-{number}.pid"
    standalone.wait_for(path.exists, 600, f"try {number} of the task to start", server, interval=1)
    os.kill(int(path.read_text()), signal.SIGKILL)


def test_a_task_killed_on_its_last_try_alerts_once_naming_the_task_the_try_and_the_signal(
    project: Project, airflow_db: Path, smtp_server: MailCatcher, tmp_path: Path
) -> None:
    from sluice.airflow.runtime import standalone
    from sluice.airflow.runtime.home import airflow

    dag_id = f"killprobe_{os.getpid()}"
    holds = tmp_path / "holds"
    holds.mkdir()
    dag_file = project.dags / f"{dag_id}.py"
    dag_file.write_text(PROBE_DAG.replace("@HOLDS@", repr(str(holds))).replace("@DAG@", dag_id))
    env = session_env(project.root)
    log_file = tmp_path / "airflow.log"
    server = standalone.start(env, log_file, project.root)
    try:
        standalone.wait_for(lambda: standalone.registered([dag_id]), 300, "the probe DAG", server, interval=1)
        airflow(["dags", "unpause", dag_id], env)
        since = time.time() - 1
        airflow(["dags", "trigger", dag_id], env)

        # Try 1 killed: Airflow retries it; a retry is routine, so no email.
        _kill_try(holds, 1, server)
        # Try 2 (the last) killed: the run fails, and the alert must say so.
        _kill_try(holds, 2, server)
        assert smtp_server.messages == [], "a kill on a try that Airflow retries sent an email"

        def failed() -> dict[str, Any] | None:
            runs = standalone.dag_runs(dag_id, since)
            return runs[0] if runs and runs[0]["state"] in standalone.TERMINAL else None

        run = standalone.wait_for(failed, 300, "the probe run to fail", server, interval=1)
        mails = standalone.wait_for(lambda: smtp_server.messages, 300, "the killed alert", server, interval=1)
    finally:
        standalone.stop(server)
        dag_file.unlink()
    assert run["state"] == "failed" and run["tasks"] == {"train": "failed"}, run

    (mail,) = mails
    assert mail["X-Sluice-Alert"] == "killed"
    assert mail["Subject"] == ("[sluice] killprobe: train was killed on its last try (try 2 of 2): signal 9 (SIGKILL)")
    body = body_text(mail)
    assert "died without reporting an error" in body and "Out of memory" in body
    assert "/tasks/train?try_number=2" in body, "the email links the log of the try that was killed"
