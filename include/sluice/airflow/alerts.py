"""Alert emails from Airflow: gather a task's facts, compose the email, send it over SMTP.

:class:`AlertNotifier` is a task-level ``on_failure_callback``: it gathers the facts from the
failed task's context (XCom of the upstream steps, the exception, the spec, what the deploy
target serves), composes the email with :mod:`sluice.airflow.alert_format` and sends it
through the SMTP provider's :class:`SmtpNotifier` (connection ``smtp_default``). A failure to
send never changes the outcome of the failed task: it is logged as ``alert email not sent: ...``
and the run goes on as it would have (the task is red already).

Drift is news, not a failure: the monitor DAG's ``alert_drift`` task sends its email with
:func:`send_alert` itself, and fails when it cannot (see :func:`sluice.airflow.tasks.alert_drift`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.providers.smtp.notifications.smtp import SmtpNotifier

from sluice.airflow.alert_format import FACT_TASKS, AlertEmail, AlertFacts, Link, compose, landing_news

if TYPE_CHECKING:
    from sluice.services.storage import PipelineStore
    from sluice.spec.loader import LoadedSpec

log = logging.getLogger(__name__)


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
            url = None
            if self.store is not None:
                url = urls.report_url(self.pipeline, self.store.location(""), path, self.airflow_base)
            facts.links.append(Link(label, url, str(path)))


def gather_facts(kind: str, pipeline: str, spec_path: str | None, context: Any) -> AlertFacts:
    """Collect the facts of a failed task from its Airflow context.

    Args:
        kind: Alert kind of the step.
        pipeline: Pipeline name.
        spec_path: The spec file (to find storage paths), or None.
        context: The Airflow context given to ``on_failure_callback``.
    """
    from sluice.airflow import urls

    ti = context["ti"]
    dag_id, run_id, task_id = ti.dag_id, ti.run_id, ti.task_id
    error = context.get("exception")
    facts = AlertFacts(kind, pipeline, dag_id, task_id, run_id, error=str(error) if error else "")
    source = FACT_TASKS.get(kind)
    if source:
        facts.data = ti.xcom_pull(task_ids=source)
    base = urls.airflow_base_url()
    # Never ti.log_url: Airflow builds it on port 8080 whatever port the API server uses.
    log_url = urls.task_log_url(
        dag_id, run_id, task_id, getattr(ti, "try_number", None), getattr(ti, "map_index", None), base
    )
    facts.links.append(Link("Airflow task log", log_url))
    facts.links.append(Link("Airflow run", urls.dag_run_url(dag_id, run_id, base)))
    where = _Source(pipeline, ti, base)
    if spec_path:
        try:
            from sluice.airflow.connections import open_pipeline_store
            from sluice.spec.loader import load_spec

            where.loaded = load_spec(spec_path)
            where.store = open_pipeline_store(where.loaded)
        except Exception as exc:  # the email still goes out, only without the storage links
            log.warning("alert: cannot load spec %s for links: %s", spec_path, exc)
    gather = _KIND_FACTS.get(kind)
    if gather is not None:
        gather(facts, facts.data if isinstance(facts.data, dict) else {}, where)
    return facts


def _gate_facts(facts: AlertFacts, data: dict[str, Any], where: _Source) -> None:
    """The candidate's and champion's MLflow runs and the decision record."""
    from sluice.airflow import urls

    cand = (data.get("candidate") or {}).get("run_id")
    champ = (data.get("champion") or {}).get("run_id")
    if cand:
        facts.links.append(Link("MLflow run (candidate)", urls.mlflow_run_url(cand)))
    if champ:
        facts.links.append(Link("MLflow run (champion)", urls.mlflow_run_url(champ)))
    if where.store is not None:
        where.report(facts, "Decision record", where.store.location(where.store.run_key(facts.run_id, "decision.json")))


def _validation_facts(facts: AlertFacts, data: dict[str, Any], where: _Source) -> None:
    """The quarantine bound and the report of each batch that was not accepted."""
    if where.loaded is not None:
        facts.extra["max_quarantine_rate"] = where.loaded.spec.validation.max_quarantine_rate
    for o in data.get("outcomes") or []:
        if o.get("status") != "accepted":
            where.report(facts, f"Validation report, batch {o.get('batch_id')}", o.get("report"))


def _deploy_facts(facts: AlertFacts, data: dict[str, Any], where: _Source) -> None:
    """The model's MLflow run and what the deploy target serves now."""
    from sluice.airflow import urls

    evaluated = where.ti.xcom_pull(task_ids="evaluate") or {}
    cand = (evaluated.get("candidate") or {}).get("run_id")
    if cand:
        facts.links.append(Link("MLflow run (model being deployed)", urls.mlflow_run_url(cand)))
    if where.loaded is not None and where.store is not None:
        from sluice.airflow.kubernetes import cluster_connector
        from sluice.steps.targets import target_for

        facts.extra["target"] = where.loaded.spec.deployment.target
        # The target answers from its own source of truth (the cluster for kubernetes, through
        # the spec's Airflow connection); no probe of a local process here: the record is
        # what the failed deploy left.
        target = target_for(where.loaded, where.store, connect=cluster_connector(where.loaded))
        facts.extra["serving"] = target.served(probe=False).facts()
    if where.store is not None and where.loaded is not None and where.loaded.spec.deployment.target == "local":
        # A local model server's log is a working file of the machine that ran the deploy.
        facts.links.append(Link("Deploy folder (server logs)", None, str(where.store.scratch("deploy"))))


def _drift_facts(facts: AlertFacts, data: dict[str, Any], where: _Source) -> None:
    """The drift run in MLflow and the drift report."""
    from sluice.airflow import urls

    if data.get("mlflow_run_id"):
        facts.links.append(Link("MLflow run (drift)", urls.mlflow_run_url(data["mlflow_run_id"])))
    where.report(facts, "Drift report", data.get("report_path"))


#: Alert kind -> what it adds to the generic facts (log, run, error).
_KIND_FACTS: dict[str, Callable[[AlertFacts, dict[str, Any], _Source], None]] = {
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
        context: The Airflow context of the task.

    Returns:
        The email sent.
    """
    email = compose(facts)
    # A fresh notifier per email: a task's notifier is shared by every run of the task.
    _TwoPartNotifier(
        to=to,
        subject=email.subject,
        html_content=email.html,
        text=email.text,
        smtp_conn_id=smtp_conn_id,
        custom_headers={"X-Sluice-Alert": facts.kind, "X-Sluice-Pipeline": facts.pipeline},
    ).notify(context)
    return email


class AlertNotifier(SmtpNotifier):
    """Task-level failure callback that emails a sluice alert through the SMTP provider.

    The subject and body are built from the failed task's context (never Jinja templates), then
    sent by :class:`SmtpNotifier` with connection ``smtp_conn_id``; the sender comes from the
    connection's ``from_email`` extra. Any error while composing or sending is logged as
    ``alert email not sent: ...`` and swallowed: an alert must never change a task's outcome.

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
        try:
            if self.alert == "landing" and not landing_news(context["ti"].xcom_pull(task_ids=FACT_TASKS["landing"])):
                return  # a land that succeeded with nothing to report: no email (and no spec to load)
            facts = gather_facts(self.alert, self.pipeline, self.spec_path, context)
            if self.alert == "failure" and _repeated(facts):
                log.info("alert email not sent: the same failure of %s was alerted recently", facts.task_id)
                return
            send_alert(facts, list(self.to), self.smtp_conn_id, context)
            if self.alert == "failure":
                _remember(facts)
        except Exception as exc:  # an alert must not change the task's outcome
            log.error(
                "alert email not sent: %s alert for %s to %s via connection %s: %s: %s",
                self.alert,
                self.pipeline,
                ", ".join(self.to),
                self.smtp_conn_id,
                type(exc).__name__,
                exc,
            )
            return
        log.info("alert email sent: %s alert for %s to %s", self.alert, self.pipeline, ", ".join(self.to))
