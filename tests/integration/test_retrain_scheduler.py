"""Retraining triggers under the real scheduler and DAG processor (``airflow standalone``).

The standalone shares this test session's Airflow database, so the test reads runs and
writes asset events through Airflow's own models, as the REST API would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.services.storage import PipelineStore, read_json
from tests.conftest import Project, fresh_mlflow_store
from tests.integration.conftest import small_spec
from tests.standalone import session_env, wait_gone
from tests.storage import local

pytestmark = pytest.mark.integration
PIPELINE = "retrain_burst"
TRAIN = f"{PIPELINE}__train"
DRIFT_URI = f"sluice://{PIPELINE}/drift"


@pytest.fixture(scope="module")
def scheduler(
    tmp_path_factory: pytest.TempPathFactory, airflow_db: Path, mlflow_store_template: Path
) -> Iterator[dict[str, Any]]:
    """A project with one pipeline (retrain_on: [drift]) served by a running standalone."""
    from sluice.airflow.runtime import standalone
    from sluice.airflow.runtime.home import airflow

    project = Project(tmp_path_factory.mktemp("sched") / "project", Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]))
    small_spec(project, name=PIPELINE)
    env = session_env(project.root)
    env["MLFLOW_TRACKING_URI"] = fresh_mlflow_store(mlflow_store_template, project.root / ".sluice")
    log_file = project.root / "standalone.log"
    server = standalone.start(env, log_file, project.root)
    try:
        standalone.wait_for(
            lambda: standalone.registered([TRAIN, f"{PIPELINE}__monitor"]), 240, "the DAGs", server, interval=1
        )
        airflow(["dags", "unpause", TRAIN], env)
        yield {"project": project, "env": env, "server": server, "log": log_file}
    finally:
        standalone.stop(server)
        for pid in wait_gone(project.root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert wait_gone(project.root) == {}, "the standalone left processes behind"


def _finished_runs(since: float) -> list[dict[str, Any]]:
    from sluice.airflow.runtime import standalone

    runs = standalone.dag_runs(TRAIN, since)
    return runs if runs and all(r["state"] in standalone.TERMINAL for r in runs) else []


def test_a_drift_event_starts_a_train_run(scheduler: dict[str, Any]) -> None:
    from sluice.airflow.runtime import standalone

    since = time.time()
    standalone.emit_asset_events(DRIFT_URI, [{"drift_share": 0.5, "threshold": 0.15, "batches": ["b1"]}])
    (run,) = standalone.wait_for(
        lambda: _finished_runs(since), 180, "the drift-triggered train run", scheduler["server"]
    )

    assert run["run_type"].endswith("asset_triggered") and run["consumed_events"] == 1
    # No batch has been accepted in this project: check_trigger skips, and so does the rest.
    assert run["state"] == "success"
    assert run["tasks"]["check_trigger"] == "skipped"
    assert run["tasks"]["build_features"] == "skipped" and run["tasks"]["deploy"] == "skipped"
    store = PipelineStore(scheduler["project"].root / "data" / "sluice", PIPELINE)
    decision = read_json(local(store, store.keys.run(run["run_id"])) / "trigger.json")
    assert decision["triggers"] == ["drift"] and decision["proceed"] is False
    assert "nothing to train on" in decision["reason"]
    assert decision["events"][0]["extra"]["drift_share"] == 0.5, "the run sees the numbers of the event"


def test_a_burst_of_drift_events_gives_one_run(scheduler: dict[str, Any]) -> None:
    from sluice.airflow.runtime import standalone

    since = time.time()
    standalone.emit_asset_events(DRIFT_URI, [{"drift_share": 0.2 + i / 10, "burst": i} for i in range(5)])
    standalone.wait_for(lambda: _finished_runs(since), 180, "the burst's train run", scheduler["server"])
    time.sleep(10)  # twenty idle scheduler loops: a second run would have been created by now

    runs = standalone.dag_runs(TRAIN, since)
    assert len(runs) == 1, runs
    assert runs[0]["consumed_events"] >= 1
