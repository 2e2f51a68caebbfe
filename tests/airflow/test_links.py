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
from tests.conftest import Project

AF = "http://airflow.test:8080"


class SyntheticTI:
    """The running task instance the worker hands to ``get_link``."""

    def __init__(self, xcoms: dict[str, Any]) -> None:
        self.dag_id, self.run_id, self.xcoms = "flights_delay__train", "manual__1", xcoms

    def xcom_pull(self, task_ids: str) -> Any:
        return self.xcoms.get(task_ids)


def test_mlflow_link_prefers_the_evaluated_candidate_and_is_empty_before_training() -> None:
    assert mlflow_link({"mlflow_run_id": "r1"}, None, "http://mlflow:5000") == "http://mlflow:5000/#/runs/r1"
    assert mlflow_link({"mlflow_run_id": "r1"}, {"candidate": {"run_id": "r1"}}) == "http://localhost:5000/#/runs/r1"
    assert mlflow_link(None, None) == ""


def test_validation_link_opens_the_rejected_batch_report_or_the_batches_folder(tmp_path: Path) -> None:
    base = tmp_path / "sluice" / "p"
    ok = {"batch_id": "a", "status": "accepted", "report": str(base / "batches" / "a" / "validation.json")}
    bad = {"batch_id": "b", "status": "rejected", "report": str(base / "batches" / "b" / "validation.json")}

    assert validation_link("p", base, {"outcomes": [ok]}, AF) == f"{AF}/sluice/reports/p/batches/a/validation.json"
    assert validation_link("p", base, {"outcomes": [ok, bad]}, AF) == f"{AF}/sluice/reports/p/batches/b/validation.json"
    assert validation_link("p", base, {"outcomes": [ok, ok]}, AF) == f"{AF}/sluice/reports/p/batches"
    assert validation_link("p", base, {"outcomes": []}, AF) == ""


def test_drift_link_serves_the_html_report_from_the_monitor_xcom(tmp_path: Path) -> None:
    base = tmp_path / "sluice" / "p"
    xcom = {"report_path": str(base / "monitor" / "r1" / "drift.html"), "mlflow_run_id": "m1"}
    assert drift_link("p", base, xcom, AF) == f"{AF}/sluice/reports/p/monitor/r1/drift.html"
    assert drift_link("p", base, {"report_path": "/elsewhere/drift.html"}, AF) == ""


def test_each_task_gets_its_buttons_and_they_read_the_run_xcom(project: Project) -> None:
    spec = str(project.write_spec())
    assert [type(x) for x in links_for("gate", spec)] == [MlflowRunLink]
    assert [type(x) for x in links_for("check_batches", spec)] == [ValidationReportLink]
    assert DriftReportLink in [type(x) for x in links_for("compute_drift", spec)]
    assert links_for("land", spec) == []

    base = project.root / "data" / "sluice" / "flights_delay"
    ti = SyntheticTI(
        {
            "evaluate": {"candidate": {"run_id": "cand"}},
            "validate": {"outcomes": [{"status": "rejected", "report": str(base / "batches/x/validation.json")}]},
            "compute_drift": {"report_path": str(base / "monitor/drift.html")},
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

    from sluice.airflow.reports_app import create_app

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

    from sluice.airflow.reports_app import create_app

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
