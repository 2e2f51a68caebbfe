"""Alert emails from real DAG runs (dag.test()) to a real SMTP server, with real GX, Spark and MLflow."""

from __future__ import annotations

import pytest

from sluice.services.storage import PipelineStore
from tests.conftest import Project, free_port
from tests.integration.conftest import build_dags, run_dag, small_spec
from tests.smtp_server import MailCatcher, body_text, smtp_conn
from tests.storage import local

pytestmark = pytest.mark.integration
SAMPLE = 3000
ONCALL = ["ml-oncall@example.com"]


def _champion(project: Project) -> str | None:
    from sluice.services import tracking

    champ = tracking.champion(tracking.configure(project.root), "flights_delay")
    return str(champ.version) if champ else None


def test_gate_failure_emails_the_numbers_and_smtp_down_changes_nothing(
    flights_project: Project,
    smtp_server: MailCatcher,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from demo.producer import drop_month
    from sluice.services.storage import read_json
    from sluice.steps.deploy import current_deployment

    project = flights_project
    drop_month(project.landing, 1, sample=SAMPLE)
    dags = build_dags(project)
    assert run_dag(dags["flights_delay__ingest"])[0] == "success"
    assert run_dag(dags["flights_delay__train"])[0] == "success"
    assert smtp_server.messages == [], "a passing run sends no alert"
    assert _champion(project) == "1"

    # A candidate that only sees `distance` is clearly worse than the champion: the gate fails.
    small_spec(project, features=["distance"])
    state, tasks = run_dag(build_dags(project)["flights_delay__train"])
    assert state == "failed" and tasks["gate"] == "failed"

    (msg,) = smtp_server.wait_for(1)
    assert msg["To"] == "ml-oncall@example.com"
    subject = msg["Subject"]
    assert subject.startswith("[sluice] flights_delay: gate failed, candidate roc_auc 0.")
    assert subject.endswith("; champion v1 kept") and "vs champion v1 0." in subject
    body = body_text(msg)
    records = [read_json(p) for p in (local(_store(project)) / "runs").glob("*/decision.json")]
    (decision,) = [d for d in records if d["verdict"] == "fail"]
    assert f"{decision['candidate']['score']:.4f}" in body
    assert f"{decision['champion']['score']:.4f}" in body
    assert "max_regression_vs_champion" in body and "0.0100" in body and "0.5500" in body
    assert f"http://localhost:5000/#/runs/{decision['candidate']['run_id']}" in body
    assert f"http://localhost:5000/#/runs/{decision['champion']['run_id']}" in body
    assert "/dags/flights_delay__train/runs/" in body and "/tasks/gate" in body
    assert "/sluice/reports/flights_delay/runs/" in body and "decision.json" in body
    deployed = current_deployment(_store(project))
    assert deployed is not None and deployed["version"] == "1"

    # SMTP down: the gate still fails, the champion stays, and the log says the email was not sent.
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(free_port()))
    capfd.readouterr()
    caplog.clear()
    state, tasks = run_dag(build_dags(project)["flights_delay__train"])
    # Under dag.test() the task log reaches stdout (structlog) or, once another test has set up
    # logging in this process, the logging handlers: read both.
    captured = capfd.readouterr()
    task_log = captured.out + captured.err + caplog.text
    assert state == "failed" and tasks["gate"] == "failed"
    assert tasks["promote"] == "upstream_failed"
    assert _champion(project) == "1"
    assert current_deployment(_store(project)) == deployed
    assert "alert email not sent: gate alert for flights_delay to ml-oncall@example.com" in task_log
    assert "ConnectionRefusedError" in task_log
    assert len(smtp_server.messages) == 1


def test_rejected_batch_emails_the_quarantine_rate_and_report(
    flights_project: Project, smtp_server: MailCatcher
) -> None:
    from demo.producer import drop_month

    project = flights_project
    drop_month(project.landing, 1, bad_rows=150, sample=SAMPLE)  # 5% bad rows, limit 2%
    state, tasks = run_dag(build_dags(project)["flights_delay__ingest"])
    assert state == "failed" and tasks["check_batches"] == "failed"

    (msg,) = smtp_server.wait_for(1)
    assert msg["Subject"] == (
        "[sluice] flights_delay: validation failed, 1 batch(es) rejected (quarantine rate exceeded)"
    )
    body = body_text(msg)
    (batch_id,) = _store(project).batches.ids()
    report = local(_store(project), _store(project).keys.batch(batch_id)) / "validation.json"
    assert batch_id in body
    assert "150 (5.00%; max 2.00%)" in body
    assert "quarantine rate 5.00% exceeds max_quarantine_rate 2.00%" in body
    assert str(report) in body
    assert f"/sluice/reports/flights_delay/batches/{batch_id}/validation.json" in body


def _store(project: Project) -> PipelineStore:
    return PipelineStore(project.root / "data" / "sluice", "flights_delay")


def test_a_refused_input_is_emailed_once_by_the_ingest_run_and_shown_by_status(
    flights_project: Project, smtp_server: MailCatcher, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, a matching folder never woke the sensor and its refusal was only a log line."""
    from demo.producer import drop_month
    from sluice.cli import main

    project = flights_project
    drop_month(project.landing, 1, sample=1000)
    (project.landing / "flights_2013-02.parquet").mkdir()  # a Spark-style output folder

    state, tasks = run_dag(build_dags(project)["flights_delay__ingest"])

    assert state == "success" and tasks["land"] == "success"
    (msg,) = smtp_server.wait_for(1)
    assert msg["Subject"] == "[sluice] flights_delay: landing: 1 input(s) refused"
    assert "flights_2013-02.parquet" in body_text(msg) and "a folder" in body_text(msg)
    assert main(["status", str(project.dags / "flights_delay.pipeline.yaml")]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("  refused ")]
    assert "flights_2013-02.parquet" in line and "moved to _rejected/" in line
