"""The embedded MLflow store: made once by bootstrap, never by tasks, safe under concurrent tasks."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.conftest import REPO, fresh_mlflow_store

from sluice.services import tracking

pytestmark = pytest.mark.integration

# What a train and a monitor task do first, in separate processes: a run with metrics.
TASK = textwrap.dedent(
    """
    import sys
    from sluice.services import tracking
    client = tracking.configure_uri(sys.argv[1])
    exp = tracking.ensure_experiment(client, "concurrent", __import__("pathlib").Path(sys.argv[2]))
    run = client.create_run(exp, run_name=sys.argv[3])
    for step in range(30):
        client.log_metric(run.info.run_id, "m", step, step=step)
    client.set_terminated(run.info.run_id)
    print("ok")
    """
)


def test_a_task_never_creates_the_store_and_says_how_to_make_it(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(tracking.TrackingStoreError, match="sluice bootstrap"):
        tracking.configure_uri(uri)
    assert not (tmp_path / "mlflow.db").exists(), "the task must not have created it"


def test_concurrent_tasks_on_a_bootstrapped_store_all_succeed(tmp_path: Path, mlflow_store_template: Path) -> None:
    uri = fresh_mlflow_store(mlflow_store_template, tmp_path)
    env = {"SLUICE_PROJECT_DIR": str(tmp_path), "MLFLOW_TRACKING_URI": uri, "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TASK, uri, str(tmp_path), f"task-{i}"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err[-2000:] for _, err in outputs]
    tracking.check_store(uri)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'").fetchone() == (4,)
        assert db.execute("SELECT count(*) FROM metrics").fetchone() == (120,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_store_left_half_migrated_is_refused_with_the_fix_and_bootstrap_repairs_it(
    tmp_path: Path, mlflow_store_template: Path
) -> None:
    uri = fresh_mlflow_store(mlflow_store_template, tmp_path)
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        # What an interrupted batch migration leaves behind (the error users saw:
        # "table _alembic_tmp_latest_metrics already exists").
        db.execute("CREATE TABLE _alembic_tmp_latest_metrics (key VARCHAR(250))")
    with pytest.raises(tracking.TrackingStoreError, match=r"interrupted migration.*sluice bootstrap"):
        tracking.configure_uri(uri)
    assert "dropped _alembic_tmp_latest_metrics" in tracking.init_store(uri)
    tracking.configure_uri(uri).search_experiments()


def test_a_tracking_server_that_never_answers_fails_the_call_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from mlflow.exceptions import MlflowException

    for key in tracking.HTTP_LIMITS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")  # the shipped limits, shortened for the test
    # Accepts connections (the kernel's backlog) and never reads or answers: a hung server.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        uri = f"http://127.0.0.1:{hung.getsockname()[1]}"
        client = tracking.configure_uri(uri)
        with pytest.raises(MlflowException, match=r"(?i)timed? ?out|max retries"):
            client.search_experiments()
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == tracking.HTTP_LIMITS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
