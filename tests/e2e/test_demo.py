"""The demo under the real Airflow scheduler, DAG processor and triggerer, in a scratch copy."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.airflow.runtime.standalone import isolated_env
from tests.e2e.demo_outcomes import check_demo_months
from tests.standalone import processes_of, scratch_project

#: The demo gets 25 minutes (its own limit below), not the suite's 15: in `make test` it shares
#: the two cores with the production-shape stack on the other worker.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture()
def project(tmp_path: Path) -> Iterator[Path]:
    """A scratch copy of the project; whatever it leaves running is killed afterwards."""
    root = scratch_project(tmp_path / "demo-project")
    yield root
    for pid in processes_of(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_demo_ingests_monitors_retrains_on_drift_gates_and_deploys(project: Path) -> None:
    # The scratch project gets its own Airflow home, MLflow store and API port.
    env = isolated_env(project)
    subprocess.run(
        [sys.executable, "-m", "sluice.cli", "bootstrap"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    # The project's own store (bootstrap made it) holds a user's pipeline: the demo must not touch it.
    from mlflow.tracking import MlflowClient

    user_store = f"sqlite:///{project / '.sluice' / 'mlflow.db'}"
    users = MlflowClient(tracking_uri=user_store, registry_uri=user_store)
    user_run = users.create_run(users.create_experiment("users_own_pipeline")).info.run_id
    # January (first champion, by hand), February (40 bad rows, no drift), May (drift).
    cmd = [sys.executable, str(project / "include" / "demo" / "run_demo.py"), "--months", "1,2,5"]
    demo = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = demo.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        demo.terminate()  # the demo stops Airflow on SIGTERM
        out, err = demo.communicate(timeout=60)
        pytest.fail("demo did not finish in 25 minutes:\n" + out[-4000:])
    assert demo.returncode == 0, out[-4000:] + err[-4000:]
    assert "demo: OK" in out
    summary = json.loads((project / ".sluice" / "demo-summary.json").read_text())
    check_demo_months(summary["months"])
    may = summary["months"][2]
    assert Path(may["drift"]["report_path"]).exists()
    # The drift alert email reached the demo's SMTP server; the calm months sent none.
    assert [m["alert"] for m in may["emails"]] == ["drift"]
    assert may["emails"][0]["subject"].startswith("[sluice] flights_delay: drift detected, 1 of 6 columns drifted")
    assert summary["months"][1]["emails"] == []
    assert processes_of(project) == {}, "the demo leaves no process behind"

    assert users.get_run(user_run).info.experiment_id, "the user's MLflow history survived the demo"
    assert not users.search_registered_models(), "the demo registered nothing in the project's store"
    demo_store = f"sqlite:///{project / '.sluice' / 'demo' / 'mlflow.db'}"
    champion = MlflowClient(tracking_uri=demo_store, registry_uri=demo_store).get_model_version_by_alias(
        "flights_delay", "champion"
    )
    assert str(champion.version) == (may["deployed"] or "1")
