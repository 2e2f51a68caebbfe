"""Alert emails: the content of each kind, and delivery through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from sluice.airflow.notifications.alert_format import AlertFacts, compose, fact_record
from sluice.airflow.notifications.alerts import AlertNotifier
from sluice.services.storage import write_json_atomic
from tests.conftest import Project, free_port
from tests.smtp_server import MailCatcher, body_text, smtp_conn

DECISION: dict[str, Any] = {
    "pipeline": "flights_delay",
    "verdict": "fail",
    "reason": "FAILED candidate 0.6192 >= champion 0.6350 - 0.005",
    "metric": "roc_auc",
    "higher_is_better": True,
    "thresholds": {"min": 0.65, "max": None, "max_regression_vs_champion": 0.005},
    "candidate": {"run_id": "cand123", "score": 0.6192},
    "champion": {"version": "1", "run_id": "champ456", "score": 0.6350},
    "holdout": {"path": "/x/holdout.parquet", "rows": 2800, "split": "holdout month=2"},
    "checks": [
        {"name": "floor", "passed": False, "detail": "candidate roc_auc 0.6192 >= min 0.65"},
        {"name": "vs_champion", "passed": False, "detail": "candidate 0.6192 >= champion 0.6350 - 0.005"},
    ],
    "airflow_run_id": "manual__2026-01-01",
    "decided_at": 1767225600.0,
}

DRIFT: dict[str, Any] = {
    "status": "compared",
    "drift_share": 0.5,
    "threshold": 0.3,
    "drift_detected": True,
    "columns": [
        {"column": "distance", "method": "K-S p_value", "score": 0.001, "threshold": 0.05, "drifted": True},
        {"column": "carrier", "method": "chi-square p_value", "score": 0.4, "threshold": 0.05, "drifted": False},
    ],
    "report_path": "",  # set per test, inside the pipeline's storage
    "mlflow_run_id": "drift789",
    "batches": ["b4e760fc27f6115d"],
    "champion_version": "3",
}


class SyntheticTI:
    """What an ``on_failure_callback`` reads from its context's task instance."""

    def __init__(self, dag_id: str, task_id: str, xcoms: dict[str, Any], run_id: str = "manual__2026-01-01") -> None:
        self.dag_id, self.task_id, self.run_id = dag_id, task_id, run_id
        self.xcoms = xcoms
        self.try_number, self.map_index = 2, -1
        # What Airflow 3.3 builds when [api] base_url is unset: port 8080, whatever [api] port is.
        self.log_url = f"http://localhost:8080/dags/{dag_id}/runs/{run_id}/tasks/{task_id}?try_number=2"

    @property
    def our_log_url(self) -> str:
        """The task log on the port the API server really uses (``AIRFLOW__API__PORT``)."""
        from sluice.airflow import urls

        return urls.task_log_url(self.dag_id, self.run_id, self.task_id, self.try_number)

    def xcom_pull(self, task_ids: str) -> Any:
        return self.xcoms.get(task_ids)


def _facts(kind: str, data: Any, **extra: Any) -> AlertFacts:
    """The facts of a ``kind`` alert whose step left ``data`` (its XCom), decoded as the alert does."""
    from sluice.steps.records import decode

    record = fact_record(kind)
    typed = decode(record, data) if record is not None and data is not None else None
    return AlertFacts(kind, "flights_delay", "flights_delay__train", "gate", "manual__1", "boom", typed, extra)


def test_gate_email_shows_candidate_vs_champion_and_thresholds() -> None:
    mail = compose(_facts("gate", DECISION))

    assert mail.subject == (
        "[sluice] flights_delay: gate failed, candidate roc_auc 0.6192 vs champion v1 0.6350; champion v1 kept"
    )
    for text in ("0.6192", "0.6350", "-0.0158", "max_regression_vs_champion", "0.0050", "0.6300", "0.6500", "2800"):
        assert text in mail.html, text
    assert "candidate roc_auc 0.6192 &gt;= min 0.65" in mail.html  # every check, escaped
    assert "champion v1 and the running deployment are untouched" in mail.html
    assert "trained on" not in mail.html, "a decision record from before the batch fields says nothing of them"
    newer = DECISION | {
        "candidate": DECISION["candidate"] | {"trained_on": ["jan", "feb"]},
        "holdout": DECISION["holdout"] | {"batches": ["mar"]},
    }
    assert "; trained on jan, feb; held out mar." in compose(_facts("gate", newer)).html


def test_gate_email_names_the_ceiling_that_decided_not_the_looser_champion_bar() -> None:
    """An error metric: ``max: 60`` refused 70.0 although the champion's bar (85.33) allowed it."""
    decision = DECISION | {
        "metric": "rmse",
        "higher_is_better": False,
        "reason": "FAILED candidate rmse 70.0000 <= max 60.0",
        "thresholds": {"min": None, "max": 60.0, "max_regression_vs_champion": 5.33},
        "candidate": {"run_id": "cand123", "score": 70.0},
        "champion": {"version": "4", "run_id": "champ456", "score": 80.0},
        "checks": [
            {"name": "ceiling", "passed": False, "detail": "candidate rmse 70.0000 <= max 60.0"},
            {"name": "vs_champion", "passed": True, "detail": "candidate 70.0000 <= champion 80.0000 + 5.33"},
        ],
    }

    text = compose(_facts("gate", decision)).text

    assert "Decided by: candidate rmse 70.0000 <= max 60.0 (gate.max)." in text
    assert "candidate needed | ≤ 60.0000 (gate.max)" in text
    assert "champion bar | ≤ 85.3300 (champion + allowed regression)" in text
    assert "candidate needed | ≤ 85.33" not in text


def test_validation_email_names_each_rejected_batch_with_quarantine_rate_and_report() -> None:
    outcomes = [
        {"batch_id": "aaa", "status": "accepted", "reason": "all checks passed", "report": "/r/aaa/validation.json"},
        {
            "batch_id": "bbb",
            "status": "rejected",
            "reason": "quarantine rate 5.00% exceeds max_quarantine_rate 2.00%",
            "rows": 3000,
            "quarantined": 150,
            "quarantine_rate": 0.05,
            "failed_checks": ["between distance: 150 rows"],
            "report": "/r/bbb/validation.json",
        },
    ]
    mail = compose(_facts("validation", {"outcomes": outcomes}, max_quarantine_rate=0.02))

    assert mail.subject == (
        "[sluice] flights_delay: validation failed, 1 batch(es) rejected (quarantine rate exceeded)"
    )
    assert "bbb" in mail.html and "aaa" not in mail.html
    assert "150 (5.00%; max 2.00%)" in mail.html
    assert "between distance: 150 rows" in mail.html and "/r/bbb/validation.json" in mail.html


def test_missing_facts_fall_back_to_the_error() -> None:
    mail = compose(_facts("gate", None))
    assert mail.subject == "[sluice] flights_delay: gate failed: boom"
    assert "<pre>boom</pre>" in mail.html


def _monitor_context(xcoms: dict[str, Any]) -> dict[str, Any]:
    """What ``alert_drift`` reads from its Airflow context."""
    return {"ti": SyntheticTI("flights_delay__monitor", "alert_drift", xcoms)}


@pytest.mark.integration
def test_drift_alert_task_emails_the_numbers_with_report_and_mlflow_links(
    project: Project, smtp_server: MailCatcher
) -> None:
    from sluice.airflow.tasks import alert_drift

    to = ["ml-oncall@example.com", "lead@example.com"]
    spec = project.write_spec(alerts={"email": to})
    report = project.root / "data" / "sluice" / "flights_delay" / "monitor" / "run1" / "drift.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>drift</html>")
    context = _monitor_context({"compute_drift": DRIFT | {"report_path": str(report)}})

    sent = alert_drift(str(spec), to, "smtp_default", **context)

    (msg,) = smtp_server.wait_for(1)
    assert sent["sent"] is True and sent["subject"] == msg["Subject"]
    assert msg["Subject"] == (
        "[sluice] flights_delay: drift detected, 1 of 2 columns drifted (share 50.00% > threshold 30.00%)"
    )
    assert msg["X-Sluice-Alert"] == "drift"
    assert smtp_server.envelopes[0] == ("sluice@test.example", to)
    body = body_text(msg)
    assert "K-S p_value" in body and "0.0010" in body and "<b>drifted</b>" in body
    assert "champion v3" in body and "b4e760fc27f6115d" in body
    assert "http://localhost:5000/#/runs/drift789" in body
    assert "/sluice/reports/flights_delay/monitor/run1/drift.html" in body
    assert context["ti"].our_log_url in body
    assert "<h3>Error</h3>" not in body, "drift is news, not a failure"


def test_no_drift_skips_the_drift_alert_and_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from sluice.airflow.tasks import alert_drift

    # Nobody listens on smtp_default: an attempt to send would fail the task instead of skipping it.
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(free_port()))
    calm = DRIFT | {"drift_detected": False, "drift_share": 0.0}
    not_enough = calm | {"status": "not_enough_data", "drift_share": None, "reason": "not enough data: 400 rows"}
    for xcom in (calm, not_enough):
        with pytest.raises(AirflowSkipException, match="no drift"):
            alert_drift("unused.yaml", ["x@example.com"], "smtp_default", **_monitor_context({"compute_drift": xcom}))


def test_a_drift_email_that_cannot_be_sent_fails_the_task_with_what_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sluice.airflow.tasks import alert_drift

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(free_port()))  # nobody listens there
    context = _monitor_context({"compute_drift": DRIFT | {"report_path": "/r/report.html"}})

    with pytest.raises(RuntimeError) as failed:
        alert_drift("unused.yaml", ["x@example.com"], "smtp_default", **context)

    message = str(failed.value)
    assert message.startswith("drift alert email not sent to x@example.com via connection smtp_default: ")
    assert "ConnectionRefusedError" in message
    assert "report /r/report.html" in message and "MLflow run drift789" in message


def test_drift_without_recipients_is_logged_and_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    from sluice.airflow.tasks import alert_drift

    with caplog.at_level(logging.WARNING, logger="sluice.airflow.tasks"):
        sent = alert_drift("unused.yaml", [], "smtp_default", **_monitor_context({"compute_drift": DRIFT}))
    assert sent == {"sent": False, "to": [], "subject": None}
    assert "flights_delay has no alerts.email" in caplog.text


@pytest.mark.integration
def test_deploy_failure_email_says_which_version_failed_and_what_keeps_serving(
    project: Project, smtp_server: MailCatcher
) -> None:
    spec = project.write_spec()
    deploy_dir = project.root / "data" / "sluice" / "flights_delay" / "deploy"
    write_json_atomic(deploy_dir / "current.json", {"version": "1", "url": "http://127.0.0.1:5055", "pid": 1})
    ti = SyntheticTI(
        "flights_delay__train",
        "deploy",
        {"promote": {"version": "2", "previous": "1", "changed": True}, "evaluate": DECISION},
    )
    error = RuntimeError("model server v2 not healthy after 120 s; see server-v2.log")

    AlertNotifier(alert="deploy", pipeline="flights_delay", to=["ops@example.com"], spec_path=str(spec))(
        {"ti": ti, "exception": error}
    )

    (msg,) = smtp_server.wait_for(1)
    assert msg["Subject"] == ("[sluice] flights_delay: deploy of v2 failed; v1 keeps serving at http://127.0.0.1:5055")
    body = body_text(msg)
    assert "not healthy after 120 s" in body
    assert str(deploy_dir) in body
    assert "see the deploy folder below" in body
    assert "http://localhost:5000/#/runs/cand123" in body


def test_an_unreachable_smtp_server_is_logged_and_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_conn(free_port()))  # nobody listens there
    ti = SyntheticTI("flights_delay__train", "gate", {"evaluate": DECISION})
    notifier = AlertNotifier(alert="gate", pipeline="flights_delay", to=["x@example.com"])

    with caplog.at_level(logging.ERROR, logger="sluice.airflow.notifications.alerts"):
        notifier({"ti": ti, "exception": RuntimeError("gate failed")})

    assert "alert email not sent: gate alert for flights_delay to x@example.com via connection smtp_default" in (
        caplog.text
    )


def test_report_links_exist_only_inside_the_pipeline_storage(tmp_path: Path) -> None:
    from sluice.airflow.urls import stored_report_url
    from sluice.services.storage import PipelineStore

    store = PipelineStore(tmp_path / "data" / "sluice", "p")
    base = tmp_path / "data" / "sluice" / "p"
    assert stored_report_url(store, str(base / "batches" / "b 1" / "validation.json"), "http://af:8080/") == (
        "http://af:8080/sluice/reports/p/batches/b%201/validation.json"
    )
    assert stored_report_url(store, str(tmp_path / "elsewhere.json"), "http://af:8080") is None
    assert stored_report_url(store, str(base / ".." / "q" / "x.json"), "http://af:8080") is None


def _part(msg: Any, content_type: str) -> str:
    parts = [p for p in msg.walk() if p.get_content_type() == content_type]
    assert len(parts) == 1, f"{content_type}: {len(parts)} parts"
    return str(parts[0].get_content())


def test_gate_email_arrives_with_a_plain_text_part_that_has_the_same_numbers(smtp_server: MailCatcher) -> None:
    ti = SyntheticTI("flights_delay__train", "gate", {"evaluate": DECISION})

    AlertNotifier(alert="gate", pipeline="flights_delay", to=["ml-oncall@example.com"])(
        {"ti": ti, "exception": RuntimeError("gate failed")}
    )

    (msg,) = smtp_server.wait_for(1)
    assert msg.get_content_type() == "multipart/alternative"
    # Text first, HTML last: a mail client shows the last alternative it can render.
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    text, body = _part(msg, "text/plain"), _part(msg, "text/html")
    assert "<" not in text.replace("<http", "")  # no markup in the text part, only link targets
    for fact in ("0.6192", "0.6350", "-0.0158", "0.6500", "0.0050", "2800 rows", "champion v1", "cand123"):
        assert fact in text and fact in body, fact
    assert "candidate | 0.6192 (MLflow run cand123)" in text
    assert "FAILED | vs_champion | candidate 0.6192 >= champion 0.6350 - 0.005" in text
    assert "champion bar | ≥ 0.6300 (champion − allowed regression)" in text
    # gate.min (0.65) is tighter than the champion's bar (0.63): it is what the candidate needed.
    assert "candidate needed | ≥ 0.6500 (gate.min)" in text
    assert "Decided by: candidate roc_auc 0.6192 >= min 0.65 (gate.min); " in text
    assert f"Airflow task log: {ti.our_log_url}" in text
    assert "http://localhost:5000/#/runs/cand123" in text


def test_every_link_of_an_email_uses_the_port_airflow_really_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's ``ti.log_url`` says 8080 on any port; the email's links must open on this instance."""
    from sluice.airflow.notifications.alerts import gather_facts

    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__API__PORT", "18123")
    ti = SyntheticTI("flights_delay__train", "gate", {"evaluate": DECISION})

    facts = gather_facts("gate", "flights_delay", None, {"ti": ti, "exception": RuntimeError("gate failed")})

    airflow_links = [link.url for link in facts.links if link.label.startswith("Airflow")]
    assert airflow_links == [
        "http://localhost:18123/dags/flights_delay__train/runs/manual__2026-01-01/tasks/gate?try_number=2",
        "http://localhost:18123/dags/flights_delay__train/runs/manual__2026-01-01",
    ]
    assert not any(":8080" in (link.url or "") for link in facts.links)


def test_validation_email_text_lists_each_rejected_batch_on_one_line() -> None:
    validate = {
        "outcomes": [
            {
                "batch_id": "bbb",
                "status": "rejected",
                "reason": "quarantine rate 5.00% above 2.00%",
                "rows": 3000,
                "quarantined": 150,
                "quarantine_rate": 0.05,
                "failed_checks": ["between distance: 150 rows", "not_null carrier: 3 rows"],
                "report": "/r/bbb/validation.json",
            }
        ]
    }
    text = compose(_facts("validation", validate, max_quarantine_rate=0.02)).text
    assert (
        "bbb | quarantine rate 5.00% above 2.00% | 3000 | 150 (5.00%; max 2.00%) | "
        "between distance: 150 rows; not_null carrier: 3 rows | /r/bbb/validation.json"
    ) in text
    assert "Validation failed for flights_delay\n===" in text


def test_land_that_refused_inputs_or_found_a_changed_archive_emails_once_and_otherwise_stays_quiet(
    project: Project, smtp_server: MailCatcher
) -> None:
    spec = project.write_spec(alerts={"email": ["ml-oncall@example.com"]})
    notifier = AlertNotifier(
        alert="landing", pipeline="flights_delay", to=["ml-oncall@example.com"], spec_path=str(spec)
    )
    quiet = {"new": ["b1"], "archived": ["jan.parquet"], "refused": {}, "changed_after_landing": {}}
    notifier({"ti": SyntheticTI("flights_delay__ingest", "land", {"land": quiet})})
    news = quiet | {
        "refused": {"x.parquet": "a folder (e.g. a Spark output folder): land its part files as single files"},
        "changed_after_landing": {"c0ffee0000000002": "c0ffee0000000001"},
    }

    notifier({"ti": SyntheticTI("flights_delay__ingest", "land", {"land": news})})

    (msg,) = smtp_server.wait_for(1)
    assert msg["Subject"] == (
        "[sluice] flights_delay: landing: 1 input(s) refused, 1 landed file(s) changed after landing"
    )
    assert msg["X-Sluice-Alert"] == "landing"
    body = body_text(msg)
    assert "x.parquet" in body and "land its part files as single files" in body and "_rejected/" in body
    assert "c0ffee0000000002" in body and "c0ffee0000000001" in body and "supersedes" in body


@pytest.mark.parametrize(
    ("xcom", "why"),
    [
        ({"verdict": "fail", "candidate": "cand123"}, "not a valid GateDecision record"),  # an older or foreign record
        ("garbage", "not a valid GateDecision record"),
        (None, "there is none in this run"),  # evaluate never ran, or its XCom was cleared
    ],
    ids=["old-format", "garbage", "missing"],
)
def test_a_gate_alert_whose_decision_cannot_be_read_still_sends_its_email_naming_the_task(
    smtp_server: MailCatcher, caplog: pytest.LogCaptureFixture, xcom: Any, why: str
) -> None:
    ti = SyntheticTI("flights_delay__train", "gate", {"evaluate": xcom})

    with caplog.at_level(logging.INFO, logger="sluice.airflow.notifications.alerts"):
        AlertNotifier(alert="gate", pipeline="flights_delay", to=["ml-oncall@example.com"])(
            {"ti": ti, "exception": RuntimeError("gate failed")}
        )

    (msg,) = smtp_server.wait_for(1)
    assert msg["Subject"] == "[sluice] flights_delay: gate failed: gate failed"
    text = _part(msg, "text/plain")
    assert "Could not read\n--------------" in text
    assert f"- the result of task evaluate: {why}" in text
    assert f"Airflow task log: {ti.our_log_url}" in text, "the links that need no record are all there"
    assert "alert email sent: gate alert for flights_delay" in caplog.text


def test_a_deploy_alert_with_an_unreadable_promote_result_names_it_and_still_links_the_candidate() -> None:
    from sluice.airflow.notifications.alerts import gather_facts

    ti = SyntheticTI("flights_delay__train", "deploy", {"promote": {"version": 2}, "evaluate": DECISION})
    facts = gather_facts("deploy", "flights_delay", None, {"ti": ti, "exception": RuntimeError("v2 not healthy")})
    mail = compose(facts)

    assert mail.subject == "[sluice] flights_delay: deploy failed: v2 not healthy"
    assert "the result of task promote: not a valid PromoteResult record" in mail.text
    assert "MLflow run (model being deployed): http://localhost:5000/#/runs/cand123" in mail.text


def test_a_land_result_that_cannot_be_read_is_news_and_the_email_does_not_say_land_failed(
    smtp_server: MailCatcher,
) -> None:
    notifier = AlertNotifier(alert="landing", pipeline="flights_delay", to=["ml-oncall@example.com"])

    notifier({"ti": SyntheticTI("flights_delay__ingest", "land", {"land": {"new": "b1", "refused": []}})})

    (msg,) = smtp_server.wait_for(1)
    assert msg["Subject"] == "[sluice] flights_delay: land: its result could not be read"
    text = _part(msg, "text/plain")
    assert "- the result of task land: not a valid LandResult record" in text
    assert "failed" not in text.split("Could not read")[0]
