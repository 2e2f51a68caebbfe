"""Alert emails from Airflow: gather a task's facts, compose the email, send it over SMTP.

:class:`AlertNotifier` is a task-level ``on_failure_callback``: it gathers the facts from the
failed task's context (XCom of the upstream steps, the exception, the spec, what the deploy
target serves), composes the email with :mod:`sluice.airflow.notifications.alert_format` and sends it
through the SMTP provider's :class:`SmtpNotifier` (connection ``smtp_default``). A failure to
send never changes the outcome of the failed task: it is logged as ``alert email not sent: ...``
and the run goes on as it would have (the task is red already).

Drift is news, not a failure: the monitor DAG's ``alert_drift`` task sends its email with
:func:`send_alert` itself, and fails when it cannot (see :func:`sluice.airflow.tasks.alert_drift`).

A task whose process is killed (SIGKILL from the out-of-memory killer, ``kill -9``, a lost
worker) runs no code, so its ``on_failure_callback`` never runs in the task; on Airflow 3.3
nothing else runs it when the task's supervisor survives and reports the failure (the
scheduler hands a failure callback to the DAG processor only when a task stops
heartbeating, or when the executor and the database disagree). :class:`KilledTaskWatch` is
the DAG-level ``on_failure_callback`` that closes the gap: when a run fails, it alerts for
every failed task whose last try left no :data:`ALERTED_KEY` marker, i.e. whose own alert
never ran.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar, cast

from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.providers.smtp.notifications.smtp import SmtpNotifier

from sluice.airflow.notifications.alert_format import (
    FACT_TASKS,
    KILLED,
    AlertEmail,
    AlertFacts,
    Link,
    compose,
    fact_record,
)
from sluice.plan.task_ids import TaskId

if TYPE_CHECKING:
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import LoadedSpec
    from sluice.steps.records import LandResult, Record

log = logging.getLogger(__name__)
R = TypeVar("R", bound="Record")

#: XCom key a task-level alert leaves on the failed try: the task's own alert ran (sent or not).
ALERTED_KEY = "sluice_alerted"


@dataclass
class _Source:
    """Where a failed task's facts come from: its task instance, its spec and its storage."""

    pipeline: str
    ti: Any
    airflow_base: str
    loaded: LoadedSpec | None = None
    store: PipelineStore | None = None

    def report(self, facts: AlertFacts, label: str, path: Any) -> None:
        """Link a report file (through the reports page when the storage is known)."""
        from sluice.airflow import urls

        if path:
            url = urls.stored_report_url(self.store, str(path), self.airflow_base) if self.store is not None else None
            facts.links.append(Link(label, url, str(path)))


def read_result(ti: Any, task_id: str, cls: type[R], unread: list[str], required: bool = True) -> R | None:
    """The XCom result of ``task_id`` in ``ti``'s run as a ``cls`` record; None, named in ``unread``, when it cannot be.

    An alert goes out whatever the upstream step left: a missing result (the task did not
    run), one from an older sluice, or garbage leaves the record out and the email says what
    it could not read. A missing result that is not ``required`` (it only adds a link) is
    not named.
    """
    from sluice.steps.records import decode_or_none

    try:
        value = ti.xcom_pull(task_ids=task_id)
    except Exception as exc:  # the metadata database or API server: the email still goes out
        unread.append(f"the result of task {task_id}: {type(exc).__name__}: {exc}")
        return None
    if value is None:
        if required:
            unread.append(f"the result of task {task_id}: there is none in this run")
        return None
    return decode_or_none(cls, value, f"the result of task {task_id}", unread)


def gather_facts(
    kind: str,
    pipeline: str,
    spec_path: str | None,
    context: Any,
    task: str | None = None,
    data: Record | None = None,
    unread: list[str] | None = None,
) -> AlertFacts:
    """Collect the facts of a failed task from its Airflow context.

    Args:
        kind: Alert kind of the step.
        pipeline: Pipeline name.
        spec_path: The spec file (to find storage paths), or None.
        context: The Airflow context given to ``on_failure_callback`` (task or DAG level).
        task: The failed task, when it is not the context's own (a DAG-level callback).
        data: The kind's step result, when the caller has already read it.
        unread: What the caller could not read of it. With neither, the result is read from
            the XCom of the kind's task in :data:`FACT_TASKS`.
    """
    from sluice.airflow import urls

    ti = context["ti"]
    dag_id, run_id, task_id = ti.dag_id, ti.run_id, task or ti.task_id
    error = context.get("exception")
    facts = AlertFacts(kind, pipeline, dag_id, task_id, run_id, error=str(error) if error else "", data=data)
    facts.unread.extend(unread or [])
    source, record = FACT_TASKS.get(kind), fact_record(kind)
    if data is None and unread is None and source and record is not None:
        facts.data = read_result(ti, source, record, facts.unread)
    base = urls.airflow_base_url()
    try_number = getattr(ti, "try_number", None) if task_id == ti.task_id else None
    # Never ti.log_url: Airflow builds it on port 8080 whatever port the API server uses.
    log_url = urls.task_log_url(dag_id, run_id, task_id, try_number, getattr(ti, "map_index", None), base)
    facts.links.append(Link("Airflow task log", log_url))
    facts.links.append(Link("Airflow run", urls.dag_run_url(dag_id, run_id, base)))
    where = _Source(pipeline, ti, base)
    if spec_path:
        try:
            from sluice.airflow.runtime.connections import open_pipeline_store
            from sluice.spec.loader import load_spec

            where.loaded = load_spec(spec_path)
            where.store = open_pipeline_store(where.loaded)
        except Exception as exc:  # the email still goes out, only without the storage links
            log.warning("alert: cannot load spec %s for links: %s", spec_path, exc)
    gather = _KIND_FACTS.get(kind)
    if gather is not None:
        gather(facts, where)
    return facts


def _gate_facts(facts: AlertFacts, where: _Source) -> None:
    """The candidate's and champion's MLflow runs and the decision record."""
    from sluice.airflow import urls
    from sluice.steps.records import GateDecision

    decision = facts.record(GateDecision)
    if decision is not None:
        if decision.candidate.run_id:
            facts.links.append(Link("MLflow run (candidate)", urls.mlflow_run_url(decision.candidate.run_id)))
        champ = decision.champion.run_id if decision.champion is not None else None
        if champ:
            facts.links.append(Link("MLflow run (champion)", urls.mlflow_run_url(champ)))
    if where.store is not None:
        where.report(
            facts, "Decision record", where.store.location(where.store.keys.run(facts.run_id, "decision.json"))
        )


def _validation_facts(facts: AlertFacts, where: _Source) -> None:
    """The quarantine bound and the report of each batch that was not accepted."""
    from sluice.steps.records import BatchStatus, ValidationOutcomes

    if where.loaded is not None:
        facts.extra["max_quarantine_rate"] = where.loaded.spec.validation.max_quarantine_rate
    checked = facts.record(ValidationOutcomes)
    for o in checked.outcomes if checked is not None else []:
        if o.status != BatchStatus.ACCEPTED:
            where.report(facts, f"Validation report, batch {o.batch_id}", o.report)


def _deploy_facts(facts: AlertFacts, where: _Source) -> None:
    """The model's MLflow run and what the deploy target serves now."""
    from sluice.airflow import urls
    from sluice.steps.records import GateDecision

    evaluated = read_result(where.ti, str(TaskId.EVALUATE), GateDecision, facts.unread, required=False)
    if evaluated is not None:
        facts.links.append(Link("MLflow run (model being deployed)", urls.mlflow_run_url(evaluated.candidate.run_id)))
    if where.loaded is not None and where.store is not None:
        from sluice.airflow.operators.kubernetes import cluster_connector
        from sluice.steps.targets import target_for

        facts.extra["target"] = where.loaded.spec.deployment.target
        # The target answers from its own source of truth (the cluster for kubernetes, through
        # the spec's Airflow connection); no probe of a local process here: the record is
        # what the failed deploy left.
        target = target_for(where.loaded, where.store, connect=cluster_connector(where.loaded))
        facts.extra["serving"] = target.served(probe=False).facts()
        logs = target.failure_logs()
        facts.extra["failure_logs"] = logs.where
        facts.links.extend(Link(title, None, place) for title, place in logs.links)


def _drift_facts(facts: AlertFacts, where: _Source) -> None:
    """The drift run in MLflow and the drift report."""
    from sluice.airflow import urls
    from sluice.steps.records import DriftResult

    drift = facts.record(DriftResult)
    if drift is None:
        return
    if drift.mlflow_run_id:
        facts.links.append(Link("MLflow run (drift)", urls.mlflow_run_url(drift.mlflow_run_id)))
    where.report(facts, "Drift report", drift.report_path)


#: Alert kind -> what it adds to the generic facts (log, run, error), from the kind's record in ``facts.data``.
_KIND_FACTS: dict[str, Callable[[AlertFacts, _Source], None]] = {
    "gate": _gate_facts,
    "validation": _validation_facts,
    "deploy": _deploy_facts,
    "drift": _drift_facts,
}


class _AlternativeSmtpHook(SmtpHook):
    """The provider's SMTP hook, sending a plain-text part before its HTML part.

    The provider (smtp 3.2) only builds a ``text/html`` part and has no parameter for a text
    one, so the text part is added to the message it builds; connection handling (TLS, login,
    retries, sender) stays the provider's.
    """

    def __init__(self, text: str, smtp_conn_id: str, auth_type: str = "basic") -> None:
        super().__init__(smtp_conn_id=smtp_conn_id, auth_type=auth_type)
        self.text = text

    def _build_mime_message(self, *args: Any, **kwargs: Any) -> tuple[MIMEMultipart, list[str]]:
        msg, recipients = super()._build_mime_message(*args, **kwargs)
        # In multipart/alternative the last part is the preferred one: text first, HTML last.
        parts = cast("list[Message]", msg.get_payload())
        msg.set_payload([MIMEText(self.text, "plain", kwargs.get("mime_charset", "utf-8")), *parts])
        return msg, recipients


class _TwoPartNotifier(SmtpNotifier):
    """:class:`SmtpNotifier` for one composed email, sent as text and HTML alternatives."""

    def __init__(self, *, text: str, **kwargs: Any) -> None:
        super().__init__(mime_subtype="alternative", **kwargs)
        self.text = text

    @cached_property
    def hook(self) -> SmtpHook:
        """The SMTP hook that adds the plain-text part."""
        return _AlternativeSmtpHook(self.text, smtp_conn_id=self.smtp_conn_id, auth_type=self.auth_type)


def repeat_window_minutes() -> float:
    """``SLUICE_ALERT_REPEAT_MINUTES`` (default 60): how long the same failure is not re-sent."""
    from sluice.settings import settings

    return settings().alert_repeat_minutes


def _repeated(facts: AlertFacts) -> bool:
    """Whether this failure (task and error) was alerted within the repeat window.

    A continuous ingest DAG whose storage is down fails every run; one email an hour says it,
    sixty do not. The last alert is kept in an Airflow Variable, so every worker sees it.
    Any trouble reading or writing it sends the email.
    """
    import hashlib
    import json
    import time

    try:
        from airflow.sdk import Variable

        key = f"sluice_alert__{facts.pipeline}__{facts.task_id}"
        first = facts.error.strip().splitlines()[0] if facts.error.strip() else ""
        signature = hashlib.sha256(first.encode()).hexdigest()[:16]
        last = json.loads(Variable.get(key, default="{}") or "{}")
        now = time.time()
        if last.get("signature") == signature and now - float(last.get("at", 0)) < repeat_window_minutes() * 60:
            return True
    except Exception as exc:  # never lose an alert to the bookkeeping
        log.warning("alert: cannot check for a repeated failure (%s); sending", exc)
    return False


def _remember(facts: AlertFacts) -> None:
    """Record that this failure was alerted, once the email is sent.

    Recorded only after a send: an email lost to an SMTP outage must not silence the same
    failure for the whole repeat window.
    """
    import hashlib
    import json
    import time

    try:
        from airflow.sdk import Variable

        first = facts.error.strip().splitlines()[0] if facts.error.strip() else ""
        signature = hashlib.sha256(first.encode()).hexdigest()[:16]
        record = {"signature": signature, "at": time.time(), "error": first[:200]}
        Variable.set(f"sluice_alert__{facts.pipeline}__{facts.task_id}", json.dumps(record))
    except Exception as exc:  # the email went out; only the de-duplication is lost
        log.warning("alert: cannot record the alert sent (%s); the next failure alerts again", exc)


def send_alert(facts: AlertFacts, to: list[str], smtp_conn_id: str, context: Any) -> AlertEmail:
    """Compose the email of ``facts`` and send it through the SMTP provider; raise when that fails.

    Args:
        facts: What the email says (:func:`gather_facts`).
        to: Recipients.
        smtp_conn_id: Airflow connection of the SMTP server.
        context: The Airflow context of the task (or of a DAG-level callback).

    Returns:
        The email sent.
    """
    email = compose(facts)
    # No "dag" in the context it renders with: a DAG-level callback under dag.test() gets a
    # SerializedDAG, which has no template environment (apache/airflow#64649).
    without_dag: Any = {k: v for k, v in context.items() if k != "dag"}
    # A fresh notifier per email: the callback object is shared by every run of the task.
    _TwoPartNotifier(
        to=to,
        subject=email.subject,
        html_content=email.html,
        text=email.text,
        smtp_conn_id=smtp_conn_id,
        custom_headers={"X-Sluice-Alert": facts.kind, "X-Sluice-Pipeline": facts.pipeline},
    ).notify(without_dag)
    return email


def _not_sent(kind: str, pipeline: str, to: list[str], smtp_conn_id: str, exc: BaseException) -> None:
    log.error(
        "alert email not sent: %s alert for %s to %s via connection %s: %s: %s",
        kind,
        pipeline,
        ", ".join(to),
        smtp_conn_id,
        type(exc).__name__,
        exc,
    )


def _supervised() -> bool:
    """Whether this process talks to an Airflow supervisor (a task, or the DAG processor's callback runner).

    Airflow's own secrets lookup tells its contexts apart the same way. Without one, the
    callback runs in the process that ran the tasks themselves (``dag.test()``).
    """
    from airflow.sdk.execution_time import task_runner

    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def _watched(dag: Any) -> bool:
    """Whether ``dag`` carries a :class:`KilledTaskWatch` (then the watch alerts for a dead task)."""
    found = getattr(dag, "on_failure_callback", None)
    callbacks = found if isinstance(found, list) else [found]
    return any(isinstance(c, KilledTaskWatch) for c in callbacks)


class AlertNotifier(SmtpNotifier):
    """Task-level failure callback that emails a sluice alert through the SMTP provider.

    The subject and body are built from the failed task's context (never Jinja templates), then
    sent by :class:`SmtpNotifier` with connection ``smtp_conn_id``; the sender comes from the
    connection's ``from_email`` extra. Any error while composing or sending is logged as
    ``alert email not sent: ...`` and swallowed: an alert must never change a task's outcome.

    Run inside the failed task, it first leaves an :data:`ALERTED_KEY` XCom on the try, so
    the run's :class:`KilledTaskWatch` knows this failure had its alert. Run by the DAG
    processor for a task that stopped heartbeating (there is no exception: the task never
    reported), it leaves that task to the DAG's watch, or, on a DAG without one, sends the
    ``killed`` alert itself.

    Args:
        alert: Alert kind ('validation', 'gate', 'deploy', 'drift', 'failure' for any other step, or
            'landing' as ``land``'s success callback: sent only when it refused an input or found a
            landed file changed).
        pipeline: Pipeline name.
        to: Recipients (the spec's ``alerts.email``).
        spec_path: The spec file, to find report paths.
        smtp_conn_id: Airflow connection of the SMTP server.
    """

    # Bodies are composed in Python from the context; nothing is Jinja-rendered.
    template_fields = ()  # type: ignore[assignment]

    def __init__(
        self,
        *,
        alert: str,
        pipeline: str,
        to: list[str],
        spec_path: str | None = None,
        smtp_conn_id: str = "smtp_default",
    ) -> None:
        super().__init__(to=list(to), smtp_conn_id=smtp_conn_id)
        self.alert = alert
        self.pipeline = pipeline
        self.spec_path = spec_path

    def notify(self, context: Any) -> None:
        """Compose and send the email; log (never raise) when that fails."""
        # The landing alert is a success callback (a land that refused inputs still succeeded);
        # every other kind is a failure callback, and one without an exception is a dead task's.
        if self.alert != "landing":
            if "exception" not in context:
                self._lost(context)
                return
            _mark_alerted(context, self.alert)
        try:
            landed: Record | None = None
            unread: list[str] | None = None
            if self.alert == "landing":
                landed, unread = _landing_news(context["ti"])
                if landed is None and not unread:
                    return  # a land that succeeded with nothing to report: no email (and no spec to load)
            facts = gather_facts(self.alert, self.pipeline, self.spec_path, context, data=landed, unread=unread)
            if self.alert == "failure" and _repeated(facts):
                log.info("alert email not sent: the same failure of %s was alerted recently", facts.task_id)
                return
            send_alert(facts, list(self.to), self.smtp_conn_id, context)
            if self.alert == "failure":
                _remember(facts)
        except Exception as exc:  # an alert must not change the task's outcome
            _not_sent(self.alert, self.pipeline, list(self.to), self.smtp_conn_id, exc)
            return
        log.info("alert email sent: %s alert for %s to %s", self.alert, self.pipeline, ", ".join(self.to))

    def _lost(self, context: Any) -> None:
        """The task died without reporting; the scheduler asked for its failure callback."""
        ti = context["ti"]
        if _watched(context.get("dag")):
            log.info("task %s died without reporting: the run's killed-task watch alerts for it", ti.task_id)
            return
        tries = (getattr(ti, "max_tries", None) or 0) + 1
        send_killed(self.pipeline, list(self.to), self.spec_path, self.smtp_conn_id, context, ti.task_id, tries)


def _landing_news(ti: Any) -> tuple[LandResult | None, list[str]]:
    """``land``'s result when it has news (refused inputs, changed archives), and what could not be read.

    Nothing of either: no email. A result that cannot be read is news too: the email says so.
    """
    from sluice.steps.records import LandResult

    unread: list[str] = []
    landed = read_result(ti, FACT_TASKS["landing"], LandResult, unread, required=False)
    return (landed if landed is not None and landed.news() else None), unread


def _mark_alerted(context: Any, kind: str) -> None:
    """Leave the :data:`ALERTED_KEY` XCom on the failed try (Airflow clears it when the task is tried again)."""
    ti = context["ti"]
    try:
        ti.xcom_push(ALERTED_KEY, {"kind": kind, "try_number": getattr(ti, "try_number", None)})
    except Exception as exc:  # the watch may then alert a second time; never lose this one
        log.warning("alert: cannot mark %s as alerted (%s); the run's watch may alert for it too", ti.task_id, exc)


#: What the task's supervisor writes into the try's log when the task process ends without reporting.
_DEATH_EVENTS = ("Process terminated by signal", "Process exited abnormally", "SIGSEGV (Segmentation Violation)")


def death_in_log(text: str) -> str | None:
    """How a task process ended, from the supervisor's last line about it in a task log, or None.

    Returns:
        ``signal 9 (SIGKILL)``, ``signal 11 (SIGSEGV)``, ``exit code 137``... or None when the
        log records no such end (the supervisor died too, or the log is elsewhere).
    """
    for line in reversed(text.splitlines()):
        if not any(event in line for event in _DEATH_EVENTS):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            event = {}
        if not isinstance(event, dict):
            event = {}
        sig = event.get("signal")
        if sig is None and (found := re.search(r"\bsignal[=:\s\"]+(-?\d+)", line)):
            sig = found.group(1)
        name = event.get("signal_name")
        if name is None and (found := re.search(r"\bsignal_name[=:\s\"]+(SIG[A-Z0-9]+)", line)):
            name = found.group(1)
        if sig is not None:
            return f"signal {abs(int(sig))}" + (f" ({name})" if name else "")
        if "SIGSEGV" in line:
            return "signal 11 (SIGSEGV)"
        code = event.get("exit_code")
        if code is None and (found := re.search(r"\bexit_code[=:\s\"]+(-?\d+)", line)):
            code = found.group(1)
        if code is not None:
            return f"exit code {code}"
    return None


def recorded_death(dag_id: str, run_id: str, task_id: str, try_number: int | None, map_index: int = -1) -> str | None:
    """:func:`death_in_log` of a try's log on this machine (Airflow's default log layout), or None."""
    from pathlib import Path

    from airflow.sdk.configuration import conf

    if not try_number:
        return None
    folder = Path(conf.get("logging", "base_log_folder")) / f"dag_id={dag_id}" / f"run_id={run_id}"
    folder = folder / f"task_id={task_id}"
    if map_index is not None and map_index >= 0:
        folder = folder / f"map_index={map_index}"
    try:
        text = (folder / f"attempt={try_number}.log").read_text(errors="replace")
    except OSError:  # remote logging, another worker's machine: the email says less, never nothing
        return None
    return death_in_log(text)


def send_killed(
    pipeline: str,
    to: list[str],
    spec_path: str | None,
    smtp_conn_id: str,
    context: Any,
    task_id: str,
    tries: int,
    try_number: int | None = None,
) -> None:
    """Send the ``killed`` alert for ``task_id`` of the context's run (logs, never raises, when it fails)."""
    try:
        ti = context["ti"]
        facts = gather_facts(KILLED, pipeline, spec_path, context, task=task_id)
        if try_number is None and task_id == ti.task_id:
            try_number = getattr(ti, "try_number", None)
        map_index = getattr(ti, "map_index", None)
        death = recorded_death(ti.dag_id, ti.run_id, task_id, try_number, -1 if map_index is None else map_index)
        facts.extra.update(try_number=try_number or tries, tries=tries, death=death)
        send_alert(facts, to, smtp_conn_id, context)
    except Exception as exc:  # an alert must not change the run's outcome
        _not_sent(KILLED, pipeline, to, smtp_conn_id, exc)
        return
    log.info("alert email sent: killed alert for %s task %s to %s", pipeline, task_id, ", ".join(to))


class KilledTaskWatch:
    """DAG-level ``on_failure_callback``: the alert of every task that died without sending its own.

    Airflow runs it (in the DAG processor) when a run fails. For each failed task of the run
    whose last try left no :data:`ALERTED_KEY` marker (its ``AlertNotifier`` never ran because
    the process was killed), it sends the ``killed`` alert: the task, the try, and what ended
    it (the signal or exit code the task's supervisor wrote into the try's log, when the log is
    on this machine). Tries that Airflow retries fail no run, so a kill on an earlier try sends
    nothing. A plain callable, not a notifier: a DAG-level notifier fails under ``dag.test()``
    (apache/airflow#64649).

    Args:
        pipeline: Pipeline name.
        to: Recipients (the spec's ``alerts.email``).
        spec_path: The spec file, to find report paths.
        smtp_conn_id: Airflow connection of the SMTP server.
    """

    __name__ = "sluice_killed_task_watch"

    def __init__(
        self, *, pipeline: str, to: list[str], spec_path: str | None = None, smtp_conn_id: str = "smtp_default"
    ) -> None:
        self.pipeline = pipeline
        self.to = list(to)
        self.spec_path = spec_path
        self.smtp_conn_id = smtp_conn_id

    def __call__(self, context: Any) -> None:
        """Check the failed run (never raises: an alert must not change the run's outcome)."""
        try:
            self._check(context)
        except Exception as exc:
            _not_sent(KILLED, self.pipeline, self.to, self.smtp_conn_id, exc)

    def _check(self, context: Any) -> None:
        if not _supervised():
            # dag.test(): every task ran in this very process, so none died without its alert.
            log.info("killed-task watch: the tasks ran in this process; nothing to check")
            return
        ti = context.get("ti")
        if ti is None:
            log.warning("killed-task watch: Airflow named no failed task for run %s", context.get("run_id"))
            return
        states = (ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]) or {}).get(ti.run_id) or {}
        failed = sorted(task for task, state in states.items() if str(state) == "failed") or [ti.task_id]
        dag = context.get("dag")
        for task_id in failed:
            if ti.xcom_pull(task_ids=task_id, key=ALERTED_KEY) is not None:
                continue
            task = dag.get_task(task_id) if dag is not None and dag.has_task(task_id) else None
            tries = int(getattr(task, "retries", 0) or 0) + 1
            send_killed(self.pipeline, self.to, self.spec_path, self.smtp_conn_id, context, task_id, tries)
