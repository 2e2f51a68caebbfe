"""Task buttons in the Airflow UI and the plugin app that serves the reports they open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sluice.airflow.links import (
    DriftReportLink,
    MlflowRunLink,
    ValidationReportLink,
    drift_link,
    links_for,
    mlflow_link,
    validation_link,
)
from sluice.services.storage import PipelineStore
from tests.airflow.test_alerts import DECISION, DRIFT
from tests.conftest import Project

AF = "http://airflow.test:8080"
#: A whole ``train`` XCom (the links decode each step's result into its record).
TRAIN: dict[str, Any] = {
    "mlflow_run_id": "r1",
    "holdout_path": "/x/holdout.parquet",
    "split": "holdout month=2",
    "train_rows": 100,
    "holdout_rows": 20,
    "features": ["distance"],
}


def outcome(batch_id: str, status: str, report: Path) -> dict[str, Any]:
    """One batch's ``validate`` outcome, as the step writes it."""
    return {"batch_id": batch_id, "status": status, "reason": status, "report": str(report)}


def evaluated(run_id: str) -> dict[str, Any]:
    """An ``evaluate`` XCom whose candidate is ``run_id``."""
    return DECISION | {"candidate": {"run_id": run_id, "score": 0.7}}


class SyntheticTI:
    """The running task instance the worker hands to ``get_link``."""

    def __init__(self, xcoms: dict[str, Any]) -> None:
        self.dag_id, self.run_id, self.xcoms = "flights_delay__train", "manual__1", xcoms

    def xcom_pull(self, task_ids: str) -> Any:
        return self.xcoms.get(task_ids)


def test_mlflow_link_prefers_the_evaluated_candidate_and_is_empty_before_training() -> None:
    assert mlflow_link(TRAIN, None, "http://mlflow:5000") == "http://mlflow:5000/#/runs/r1"
    assert mlflow_link(TRAIN, evaluated("r2")) == "http://localhost:5000/#/runs/r2"
    assert mlflow_link(None, None) == ""


def test_validation_link_opens_the_rejected_batch_report_or_the_batches_folder(tmp_path: Path) -> None:
    base = tmp_path / "sluice" / "p"
    store = PipelineStore(tmp_path / "sluice", "p")
    ok = outcome("a", "accepted", base / "batches" / "a" / "validation.json")
    bad = outcome("b", "rejected", base / "batches" / "b" / "validation.json")

    assert validation_link(store, {"outcomes": [ok]}, AF) == f"{AF}/sluice/reports/p/batches/a/validation.json"
    assert validation_link(store, {"outcomes": [ok, bad]}, AF) == f"{AF}/sluice/reports/p/batches/b/validation.json"
    assert validation_link(store, {"outcomes": [ok, ok]}, AF) == f"{AF}/sluice/reports/p/batches"
    assert validation_link(store, {"outcomes": []}, AF) == ""


def test_drift_link_serves_the_html_report_from_the_monitor_xcom(tmp_path: Path) -> None:
    base = tmp_path / "sluice" / "p"
    store = PipelineStore(tmp_path / "sluice", "p")
    xcom = DRIFT | {"report_path": str(base / "monitor" / "r1" / "drift.html"), "mlflow_run_id": "m1"}
    assert drift_link(store, xcom, AF) == f"{AF}/sluice/reports/p/monitor/r1/drift.html"
    assert drift_link(store, DRIFT | {"report_path": "/elsewhere/drift.html"}, AF) == ""


def test_each_task_gets_its_buttons_and_they_read_the_run_xcom(project: Project) -> None:
    spec = str(project.write_spec())
    assert [type(x) for x in links_for("gate", spec)] == [MlflowRunLink]
    assert [type(x) for x in links_for("check_batches", spec)] == [ValidationReportLink]
    assert DriftReportLink in [type(x) for x in links_for("compute_drift", spec)]
    assert links_for("land", spec) == []

    base = project.root / "data" / "sluice" / "flights_delay"
    ti = SyntheticTI(
        {
            "evaluate": evaluated("cand"),
            "validate": {"outcomes": [outcome("x", "rejected", base / "batches/x/validation.json")]},
            "compute_drift": DRIFT | {"report_path": str(base / "monitor/drift.html")},
        }
    )
    (mlflow,) = links_for("gate", spec)
    (validation,) = links_for("validate", spec)
    drift = links_for("alert_drift", spec)[0]
    assert mlflow.get_link(None, ti_key=ti) == "http://localhost:5000/#/runs/cand"
    assert validation.get_link(None, ti_key=ti).endswith("/sluice/reports/flights_delay/batches/x/validation.json")
    assert drift.get_link(None, ti_key=ti).endswith("/sluice/reports/flights_delay/monitor/drift.html")
    assert mlflow.get_link(None, ti_key=SyntheticTI({})) == ""


@pytest.fixture()
def reports(project: Project) -> Path:
    project.write_spec()
    base = project.root / "data" / "sluice" / "flights_delay"
    (base / "batches" / "b1").mkdir(parents=True)
    (base / "batches" / "b1" / "validation.json").write_text('{"status": "rejected", "quarantine_rate": 0.05}')
    (base / "monitor").mkdir()
    (base / "monitor" / "drift.html").write_text("<html><script>1</script>drift</html>")
    (project.root / "secret.txt").write_text("not a report")
    return base


def test_reports_app_serves_files_inside_the_pipeline_storage_only(project: Project, reports: Path) -> None:
    from fastapi.testclient import TestClient

    from sluice.airflow.views.reports import create_app

    client = TestClient(create_app(project.dags, authenticate=False))
    got = client.get("/reports/flights_delay/batches/b1/validation.json")
    assert got.status_code == 200 and got.json() == {"status": "rejected", "quarantine_rate": 0.05}
    html = client.get("/reports/flights_delay/monitor/drift.html")
    assert html.status_code == 200 and "drift" in html.text
    assert html.headers["content-type"].startswith("text/html")
    assert html.headers["content-security-policy"].startswith("sandbox")
    listing = client.get("/reports/flights_delay/batches/")
    assert listing.status_code == 200 and 'href="b1/"' in listing.text
    assert client.get("/reports/flights_delay/../../secret.txt").status_code == 404
    assert client.get("/reports/flights_delay/%2E%2E/%2E%2E/secret.txt").status_code == 404
    assert client.get("/reports/no_such_pipeline/x.json").status_code == 404


@pytest.mark.integration
def test_reports_app_requires_an_airflow_login(project: Project, reports: Path, airflow_db: Path) -> None:
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from sluice.airflow.views.reports import create_app

    client = TestClient(create_app(project.dags))
    assert client.get("/reports/flights_delay/batches/b1/validation.json").status_code == 401
    token = init_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    client.cookies.set(COOKIE_NAME_JWT_TOKEN, token)
    assert client.get("/reports/flights_delay/batches/b1/validation.json").status_code == 200


PLUGIN_PROBE = """
import json, sys
from airflow.api_fastapi.app import create_app, init_auth_manager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi.testclient import TestClient

client = TestClient(create_app("core"))
url = "/sluice/reports/flights_delay/batches/b1/validation.json"
anonymous = client.get(url).status_code
client.cookies.set("_token", init_auth_manager().generate_jwt(SimpleAuthManagerUser(username="u", role="VIEWER")))
got = client.get(url)
print(json.dumps({"anonymous": anonymous, "status": got.status_code, "body": got.json()}))
"""


@pytest.mark.integration
def test_the_plugin_mounts_the_reports_app_on_airflows_api_server(
    project: Project, reports: Path, airflow_db: Path
) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    # Airflow loads plugins once per process from its configured folder: probe a fresh one.
    env = os.environ | {
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project.dags),
    }
    out = subprocess.run(
        [sys.executable, "-c", PLUGIN_PROBE], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"anonymous": 401, "status": 200, "body": {"status": "rejected", "quarantine_rate": 0.05}}
