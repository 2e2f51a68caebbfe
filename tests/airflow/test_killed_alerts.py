"""The ``killed`` alert: a task that died without its own alert is still reported, once, by its run's watch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluice.airflow.notifications import alerts
from sluice.airflow.notifications.alert_format import AlertFacts, compose
from sluice.airflow.notifications.alerts import ALERTED_KEY, AlertNotifier, KilledTaskWatch, death_in_log

#: The supervisor's line in a task log when the task process was killed (Airflow 3.3, JSON log).
SIGKILL_LINE = json.dumps(
    {
        "timestamp": "2026-12-06T22:31:02.104Z",
        "level": "critical",
        "event": "Process terminated by signal. Likely out of memory error (OOM). For more information, see ...",
        "signal": -9,
        "signal_name": "SIGKILL",
        "logger": "task",
    }
)


def test_the_supervisor_line_in_a_task_log_says_which_signal_or_exit_code_ended_the_task() -> None:
    assert death_in_log(f'{{"event": "starting"}}\n{SIGKILL_LINE}\n') == "signal 9 (SIGKILL)"
    plain = "[2026-12-06 22:31:02] CRITICAL - Process terminated by signal. signal=-15 signal_name=SIGTERM"
    assert death_in_log(plain) == "signal 15 (SIGTERM)"
    assert death_in_log(json.dumps({"event": "Process exited abnormally", "exit_code": 137})) == "exit code 137"
    assert death_in_log('{"event": "Task failed with exception"}') is None


def test_the_killed_email_names_the_task_the_try_and_the_signal() -> None:
    facts = AlertFacts("killed", "flights_delay", "flights_delay__train", "train", "manual__1")
    facts.extra.update(try_number=3, tries=3, death="signal 9 (SIGKILL)")

    mail = compose(facts)

    assert mail.subject == ("[sluice] flights_delay: train was killed on its last try (try 3 of 3): signal 9 (SIGKILL)")
    text = mail.text
    assert "died without reporting an error" in text and "Out of memory: Killed process" in text
    assert "try 3 of 3: the last one" in text
    assert "An MLflow run left open is closed as KILLED by the next try" in text, "the step's own next step"


class _TI:
    """The failed task instance a DAG-level callback gets (the run's last failed task)."""

    def __init__(self, task_id: str, states: dict[str, str], markers: dict[str, Any]) -> None:
        self.dag_id, self.run_id, self.task_id = "flights_delay__train", "manual__1", task_id
        self.try_number, self.map_index, self.max_tries = 3, -1, 2
        self.states, self.markers = states, markers

    def get_task_states(self, dag_id: str, run_ids: list[str]) -> dict[str, dict[str, str]]:
        return {self.run_id: self.states}

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.markers.get(task_ids) if key == ALERTED_KEY else None


class _Dag:
    def __init__(self, retries: dict[str, int], watch: Any = None) -> None:
        self.retries, self.on_failure_callback = retries, watch

    def has_task(self, task_id: str) -> bool:
        return task_id in self.retries

    def get_task(self, task_id: str) -> Any:
        return type("Task", (), {"retries": self.retries[task_id]})()

    def get_template_env(self, force_sandboxed: bool = False) -> Any:
        import jinja2

        return jinja2.Environment(autoescape=True)


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> list[AlertFacts]:
    """Emails the alerts would send (composed from the facts), captured instead of sent; in a supervised process."""
    captured: list[AlertFacts] = []
    monkeypatch.setattr(alerts, "send_alert", lambda facts, to, conn, context: captured.append(facts))
    monkeypatch.setattr(alerts, "_supervised", lambda: True)
    monkeypatch.setattr(alerts, "recorded_death", lambda *a, **k: "signal 9 (SIGKILL)")
    return captured


def test_the_watch_alerts_only_for_failed_tasks_whose_own_alert_never_ran(sent: list[AlertFacts]) -> None:
    # `train` was killed on its last try (no marker); `evaluate` failed and sent its own alert.
    ti = _TI("train", {"build_features": "success", "train": "failed", "evaluate": "failed"}, {"evaluate": {}})
    watch = KilledTaskWatch(pipeline="flights_delay", to=["oncall@example.com"])

    watch({"ti": ti, "dag": _Dag({"train": 2, "evaluate": 2}, watch), "run_id": ti.run_id})

    (facts,) = sent
    assert (facts.kind, facts.task_id) == ("killed", "train")
    assert facts.extra == {"try_number": 3, "tries": 3, "death": "signal 9 (SIGKILL)"}
    assert compose(facts).subject.endswith("train was killed on its last try (try 3 of 3): signal 9 (SIGKILL)")


def test_a_run_whose_failures_all_alerted_themselves_sends_nothing_more(sent: list[AlertFacts]) -> None:
    ti = _TI("gate", {"gate": "failed"}, {"gate": {"kind": "gate", "try_number": 1}})
    watch = KilledTaskWatch(pipeline="flights_delay", to=["oncall@example.com"])
    watch({"ti": ti, "dag": _Dag({"gate": 0}, watch), "run_id": ti.run_id})
    assert sent == []


def test_under_dag_test_the_watch_checks_nothing(sent: list[AlertFacts], monkeypatch: pytest.MonkeyPatch) -> None:
    """dag.test() runs the tasks in the callback's own process: none can have died without its alert."""
    monkeypatch.setattr(alerts, "_supervised", lambda: False)
    ti = _TI("train", {"train": "failed"}, {})
    KilledTaskWatch(pipeline="flights_delay", to=["x@example.com"])({"ti": ti, "dag": _Dag({"train": 2})})
    assert sent == []


def test_a_task_that_stopped_heartbeating_is_left_to_the_watch_or_alerted_by_its_own_callback(
    sent: list[AlertFacts],
) -> None:
    """The scheduler asks the DAG processor to run the failure callback of a task with no heartbeat (no exception)."""
    ti = _TI("train", {"train": "failed"}, {})
    notifier = AlertNotifier(alert="failure", pipeline="flights_delay", to=["oncall@example.com"])
    watch = KilledTaskWatch(pipeline="flights_delay", to=["oncall@example.com"])

    notifier({"ti": ti, "dag": _Dag({"train": 2}, watch)})
    assert sent == [], "the DAG's watch alerts when the run fails: one email, not two"

    notifier({"ti": ti, "dag": _Dag({"train": 2})})
    (facts,) = sent
    assert (facts.kind, facts.extra["try_number"], facts.extra["tries"]) == ("killed", 3, 3)


def test_a_task_level_alert_marks_its_try_so_the_watch_does_not_repeat_it(
    sent: list[AlertFacts], monkeypatch: pytest.MonkeyPatch
) -> None:
    pushed: dict[str, Any] = {}
    ti = _TI("land", {"land": "failed"}, pushed)
    ti.xcom_push = lambda key, value: pushed.update({"land": value}) if key == ALERTED_KEY else None  # type: ignore[attr-defined]
    monkeypatch.setattr(alerts, "_repeated", lambda facts: False)
    monkeypatch.setattr(alerts, "_remember", lambda facts: None)

    AlertNotifier(alert="failure", pipeline="flights_delay", to=["x@example.com"])(
        {"ti": ti, "exception": OSError(28, "No space left on device")}
    )
    assert pushed == {"land": {"kind": "failure", "try_number": 3}}
    watch = KilledTaskWatch(pipeline="flights_delay", to=["x@example.com"])
    watch({"ti": ti, "dag": _Dag({"land": 2}, watch)})
    assert [f.kind for f in sent] == ["failure"], "one email: the task's own"


def test_every_dag_of_a_pipeline_with_recipients_carries_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from sluice.airflow.render import render_pipeline
    from sluice.plan import build_plan
    from sluice.spec.loader import load_spec
    from tests.conftest import DEMO_SPEC, REPO

    monkeypatch.setenv("SLUICE_PROJECT_DIR", str(REPO))
    plan = build_plan(load_spec(DEMO_SPEC))
    dags = render_pipeline(plan)
    assert [d.dag_id.split("__")[1] for d in dags] == ["ingest", "train", "monitor", "serving"]
    for dag in dags:
        watch = dag.on_failure_callback
        assert isinstance(watch, KilledTaskWatch), dag.dag_id
        assert (watch.pipeline, watch.to) == ("flights_delay", ["ml-oncall@example.com"])
    silent = render_pipeline(dataclasses.replace(plan, alert_emails=()))
    assert all(not d.on_failure_callback for d in silent), "no recipients, no watch"


def test_with_no_exit_recorded_the_email_says_the_process_stopped_without_reporting() -> None:
    facts = AlertFacts("killed", "flights_delay", "flights_delay__train", "train", "manual__1")
    facts.extra.update(try_number=3, tries=3, death=None)

    mail = compose(facts)

    assert mail.subject == "[sluice] flights_delay: train was killed on its last try (try 3 of 3): no exit recorded"
    assert "the process stopped without reporting" in mail.text and "heartbeat stopped" in mail.text
