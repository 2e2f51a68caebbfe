"""Alert emails: what failed, why (with the numbers), and where to look.

Two halves. The formatting functions (``format_*``, :func:`compose`) are pure: plain dicts in,
an :class:`AlertEmail` out, unit-testable without Airflow. Each email is sent as
``multipart/alternative``: a plain-text part (derived from the HTML by :func:`html_to_text`, so
both say the same) for text-only mail clients and pagers, then the HTML part. :class:`AlertNotifier` is the
Airflow glue: a task-level ``on_failure_callback`` that gathers the facts from the failed
task's context (XCom of the upstream steps, the exception, the spec), composes the email and
sends it through the SMTP provider's :class:`SmtpNotifier` (connection ``smtp_default``).

A failure to send never changes the outcome of the task: it is logged as
``alert email not sent: ...`` and the run goes on as it would have.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from functools import cached_property
from html.parser import HTMLParser
from typing import Any, cast

from airflow.providers.smtp.hooks.smtp import SmtpHook
from airflow.providers.smtp.notifications.smtp import SmtpNotifier

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "[sluice]"
#: Which task's XCom holds the facts of each alert kind (the contract with the plan).
FACT_TASKS = {"validation": "validate", "gate": "evaluate", "deploy": "promote", "drift": "compute_drift"}


@dataclass
class Link:
    """One link in an email: a label, a URL (may be None) and a local path (may be None)."""

    label: str
    url: str | None = None
    path: str | None = None


@dataclass
class AlertFacts:
    """Everything an alert email says, gathered from the failed task.

    Attributes:
        kind: 'validation', 'gate', 'deploy', 'drift' or anything else (generic email).
        pipeline: Pipeline name.
        dag_id: DAG of the failed task.
        task_id: The failed task.
        run_id: Airflow run id.
        error: The exception text of the failure.
        data: The XCom of the step that holds the numbers (see :data:`FACT_TASKS`).
        extra: More facts per kind (e.g. ``max_quarantine_rate``, ``serving``).
        links: Airflow, MLflow and report links.
    """

    kind: str
    pipeline: str
    dag_id: str
    task_id: str
    run_id: str
    error: str = ""
    data: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)


@dataclass
class AlertEmail:
    """A composed email."""

    subject: str
    html: str

    @property
    def text(self) -> str:
        """The plain-text alternative of :attr:`html`: the same facts, tables as ``a | b`` rows."""
        return html_to_text(self.html)


class _TextWriter(HTMLParser):
    """Renders the small HTML subset the alert emails use as readable plain text."""

    BLOCKS = frozenset({"p", "ul", "table", "tr", "pre", "h2", "h3", "body"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.line = ""
        self.cells: list[str] | None = None
        self.href: str | None = None
        self.link_text = ""
        self.pre = False
        self.heading: str | None = None

    def _flush(self) -> None:
        text = self.line if self.pre else re.sub(r"\s+", " ", self.line).strip()
        if text:
            self.lines.append(text)
        self.line = ""

    def _blank(self) -> None:
        self._flush()
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS and tag != "tr":
            self._blank()
        if tag == "tr":
            self._flush()
            self.cells = []
        elif tag in ("td", "th"):
            self.line = ""
        elif tag == "li":
            self._flush()
            self.line = "- "
        elif tag == "br":
            self.line += "\n" if self.pre else "; "
        elif tag == "pre":
            self.pre = True
        elif tag in ("h2", "h3"):
            self.heading = tag
        elif tag == "a":
            self.href = dict(attrs).get("href")
            self.link_text = ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cells is not None:
            self.cells.append(re.sub(r"\s+", " ", self.line).strip())
            self.line = ""
        elif tag == "tr" and self.cells is not None:
            self.line = " | ".join(self.cells)
            self.cells = None
            self._flush()
        elif tag == "a":
            if self.href and self.href != self.link_text.strip():
                self.line += f" <{self.href}>"
            self.href = None
        elif tag in ("h2", "h3"):
            title = re.sub(r"\s+", " ", self.line).strip()
            self.line = ""
            self.lines += [title, ("=" if tag == "h2" else "-") * len(title)]
            self.heading = None
            self._blank()
        elif tag in self.BLOCKS:
            self._flush()
            self.pre = False
            self._blank()

    def handle_data(self, data: str) -> None:
        self.line += data
        if self.href is not None:
            self.link_text += data

    def text(self) -> str:
        self._flush()
        return "\n".join(self.lines).strip() + "\n"


def html_to_text(body: str) -> str:
    """Plain text of an alert email's HTML: headings underlined, table rows as ``a | b``, link targets kept."""
    writer = _TextWriter()
    writer.feed(body)
    writer.close()
    return writer.text()


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2%}"


def _e(text: Any) -> str:
    return html.escape(str(text))


def _table(rows: Iterable[Iterable[Any]], header: Iterable[str] | None = None) -> str:
    head = ""
    if header is not None:
        head = "<tr>" + "".join(f'<th align="left">{_e(h)}</th>' for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table border="1" cellpadding="4" cellspacing="0">{head}{body}</table>'


def _links_html(links: list[Link]) -> str:
    items = []
    for link in links:
        parts = [f"<b>{_e(link.label)}</b>: "]
        if link.url:
            parts.append(f'<a href="{_e(link.url)}">{_e(link.url)}</a>')
        if link.path:
            parts.append(f" (file <code>{_e(link.path)}</code>)" if link.url else f"<code>{_e(link.path)}</code>")
        items.append("<li>" + "".join(parts) + "</li>")
    return "<h3>Where to look</h3><ul>" + "".join(items) + "</ul>"


def _page(title: str, sections: list[str], facts: AlertFacts, todo: str) -> str:
    where = (
        f"DAG <code>{_e(facts.dag_id)}</code>, task <code>{_e(facts.task_id)}</code>, "
        f"run <code>{_e(facts.run_id)}</code>"
    )
    parts = [f"<h2>{_e(title)}</h2>", f"<p>{where}</p>", *sections, f"<h3>What to do</h3><p>{todo}</p>"]
    if facts.links:
        parts.append(_links_html(facts.links))
    if facts.error:
        parts.append(f"<h3>Error</h3><pre>{_e(facts.error)}</pre>")
    return "<html><body>" + "".join(parts) + "</body></html>"


def format_gate(facts: AlertFacts) -> AlertEmail:
    """The gate refused the candidate: candidate vs champion, thresholds and every check."""
    d = facts.data or {}
    metric = d.get("metric", "metric")
    cand = d.get("candidate") or {}
    champ = d.get("champion") or {}
    thresholds = d.get("thresholds") or {}
    higher = d.get("higher_is_better", True)
    kept = f"champion v{champ['version']}" if champ.get("version") else "no champion (none yet)"
    subject = (
        f"{SUBJECT_PREFIX} {facts.pipeline}: gate failed, candidate {metric} {_num(cand.get('score'))}"
        + (f" vs champion v{champ['version']} {_num(champ.get('score'))}" if champ.get("version") else "")
        + f"; {kept} kept"
    )
    allowed = thresholds.get("max_regression_vs_champion")
    bar = None
    if champ.get("score") is not None and allowed is not None:
        bar = champ["score"] - allowed if higher else champ["score"] + allowed
    numbers = _table(
        [
            ["metric", f"<code>{_e(metric)}</code> ({'higher' if higher else 'lower'} is better), same holdout"],
            ["candidate", f"{_num(cand.get('score'))} (MLflow run <code>{_e(cand.get('run_id', '?'))}</code>)"],
            [
                "champion",
                f"v{_e(champ['version'])}: {_num(champ.get('score'))} "
                f"(MLflow run <code>{_e(champ.get('run_id'))}</code>)"
                if champ.get("version")
                else "none yet",
            ],
            ["difference", _num(cand["score"] - champ["score"]) if champ.get("score") is not None else "n/a"],
        ]
    )
    limits = _table(
        [
            ["floor (gate.min)", _num(thresholds.get("min"))],
            ["ceiling (gate.max)", _num(thresholds.get("max"))],
            ["max_regression_vs_champion", _num(allowed)],
            [
                "candidate needed",
                f"{'&ge;' if higher else '&le;'} {_num(bar)} "
                f"(champion {'&minus;' if higher else '+'} allowed regression)"
                if bar is not None
                else "n/a",
            ],
        ]
    )
    checks = _table(
        [
            ["passed" if c.get("passed") else "<b>FAILED</b>", _e(c.get("name")), _e(c.get("detail"))]
            for c in d.get("checks") or []
        ],
        header=["result", "check", "detail"],
    )
    holdout = d.get("holdout") or {}
    sections = [
        f"<p>The candidate was <b>not promoted</b>: {_e(d.get('reason', facts.error))}.</p>",
        f"<p><b>What stays safe:</b> {_e(kept)} and the running deployment are untouched.</p>",
        "<h3>Candidate vs champion</h3>" + numbers,
        "<h3>Thresholds</h3>" + limits,
        "<h3>Checks</h3>" + checks,
        f"<p>Holdout: {_e(holdout.get('rows', '?'))} rows ({_e(holdout.get('split', '?'))}).</p>",
    ]
    todo = (
        "Open the candidate's MLflow run and compare it with the champion's; change the data, the "
        "features or the model and retrain (<code>airflow dags trigger "
        f"{_e(facts.pipeline)}__train</code>). Nothing needs rolling back."
    )
    return AlertEmail(subject, _page(f"Gate failed for {facts.pipeline}", sections, facts, todo))


def format_validation(facts: AlertFacts) -> AlertEmail:
    """Batches were rejected: each with its reason, quarantine numbers and report."""
    outcomes = [o for o in ((facts.data or {}).get("outcomes") or []) if o.get("status") != "accepted"]
    limit = facts.extra.get("max_quarantine_rate")
    over = [o for o in outcomes if "quarantine rate" in str(o.get("reason", ""))]
    what = "quarantine rate exceeded" if over and len(over) == len(outcomes) else "batch rejected"
    subject = (
        f"{SUBJECT_PREFIX} {facts.pipeline}: validation failed, {len(outcomes) or 'a'} batch(es) rejected ({what})"
    )
    rows = []
    for o in outcomes:
        rows.append(
            [
                f"<code>{_e(o.get('batch_id'))}</code>",
                _e(o.get("reason")),
                _e(o.get("rows")),
                f"{_e(o.get('quarantined', 0))} ({_pct(o.get('quarantine_rate'))}; max {_pct(limit)})",
                "<br>".join(_e(c) for c in o.get("failed_checks") or []) or "none",
                f"<code>{_e(o.get('report'))}</code>",
            ]
        )
    table = _table(rows, header=["batch", "reason", "rows", "quarantined", "failed checks", "report"])
    sections = [
        f"<p>{len(outcomes)} batch(es) were <b>rejected</b>: none of their rows will be used for training.</p>"
        if outcomes
        else "<p>A batch was rejected.</p>",
        table if outcomes else "",
        "<p><b>What stays safe:</b> accepted batches of the same run were still published; the raw copy, "
        "<code>validation.json</code>, <code>gx_result.json</code> and <code>quarantine.parquet</code> are "
        "kept beside each rejected batch.</p>",
    ]
    todo = (
        "Read the validation report of each rejected batch (the failed checks name the columns and row "
        "counts; <code>quarantine.parquet</code> holds the failing rows with a "
        "<code>_sluice_failed_checks</code> column). Fix the data upstream and drop a corrected file into "
        "the landing folder; a file with the same content is never landed twice."
    )
    return AlertEmail(subject, _page(f"Validation failed for {facts.pipeline}", sections, facts, todo))


def format_deploy(facts: AlertFacts) -> AlertEmail:
    """A deploy failed: which version, why, and what keeps serving."""
    promoted = facts.data or {}
    version = promoted.get("version")
    serving = facts.extra.get("serving") or {}
    short = None
    if serving.get("unknown"):
        short = "what is served is unknown"
        still = f"{short}: {serving['unknown']}"
    elif serving.get("version"):
        still = f"v{serving['version']} keeps serving at {serving.get('url', '?')}"
    else:
        still = "nothing was being served before"
    subject = f"{SUBJECT_PREFIX} {facts.pipeline}: deploy of v{version or '?'} failed; {short or still}"
    rows = [
        ["version to deploy", f"v{_e(version)}" if version else "unknown"],
        ["previous champion", f"v{_e(promoted['previous'])}" if promoted.get("previous") else "none"],
        ["serving now", _e(still)],
        ["target", _e(facts.extra.get("target", "?"))],
    ]
    sections = [
        "<p>The new model server did not become healthy (or failed its smoke prediction), so the switch "
        "did not happen.</p>",
        _table(rows),
        f"<p><b>What stays safe:</b> {_e(still)}. Note that <code>@champion</code> already names "
        f"v{_e(version or '?')}: the registry and what is served differ until a deploy succeeds.</p>",
    ]
    todo = (
        "Read the new server's log (see the deploy folder below), fix the cause (port, dependencies, "
        "resources) and clear the <code>deploy</code> task in Airflow to retry; a retry of a version that "
        "is already healthy is a no-op."
    )
    return AlertEmail(subject, _page(f"Deploy failed for {facts.pipeline}", sections, facts, todo))


def format_drift(facts: AlertFacts) -> AlertEmail:
    """Drift beyond the threshold: share, threshold and every column's score."""
    d = facts.data or {}
    columns = d.get("columns") or []
    drifted = [c for c in columns if c.get("drifted")]
    subject = (
        f"{SUBJECT_PREFIX} {facts.pipeline}: drift detected, {len(drifted)} of {len(columns)} columns drifted "
        f"(share {_pct(d.get('drift_share'))} > threshold {_pct(d.get('threshold'))})"
    )
    ordered = sorted(columns, key=lambda c: (not c.get("drifted"), str(c.get("column"))))
    table = _table(
        [
            [
                f"<code>{_e(c.get('column'))}</code>",
                _e(c.get("method")),
                _num(c.get("score")),
                _num(c.get("threshold")),
                "<b>drifted</b>" if c.get("drifted") else "ok",
            ]
            for c in ordered
        ],
        header=["column", "method", "score", "threshold", "verdict"],
    )
    batches = d.get("batches") or []
    sections = [
        f"<p>The newest data differs from the data champion v{_e(d.get('champion_version', '?'))} was trained on: "
        f"{_pct(d.get('drift_share'))} of the columns drifted, the threshold is {_pct(d.get('threshold'))}.</p>",
        f"<p>Batches compared: {', '.join(f'<code>{_e(b)}</code>' for b in batches) or 'n/a'}.</p>",
        "<h3>Columns</h3>" + table,
        "<p><b>What stays safe:</b> the champion keeps serving; drift does not change it by itself.</p>",
    ]
    todo = (
        "Open the drift report. If the change is real (a new season, a new source), retrain "
        f"(<code>airflow dags trigger {_e(facts.pipeline)}__train</code>, or let <code>retrain_on: [drift]</code> "
        "do it); if it is a data bug, fix it upstream."
    )
    return AlertEmail(subject, _page(f"Drift detected for {facts.pipeline}", sections, facts, todo))


#: What to do when a step fails for a reason that is not a finding about the data or model.
NEXT_STEPS = {
    "land": "Check that the landing folder (or bucket) and the pipeline's storage are reachable and writable "
    "(disk space, permissions, credentials). Files stay in the landing folder until they land: nothing is lost. "
    "Clear the task, or wait for the next run, once storage works.",
    "validate": "The batch stays landed without an outcome and is validated by the next run; clear this task to "
    "validate it now once the cause (storage, memory) is fixed.",
    "publish": "No event was sent; the accepted batches stay unannounced and the next run announces them. "
    "Check the Airflow API server and metadata database.",
    "confirm_published": "The event was sent but the batches are not marked: the next run announces them again "
    "(consumers skip batches they already used). Check the pipeline's storage.",
    "check_trigger": "Check MLflow and the pipeline's storage; the run trained nothing.",
    "build_features": "Read the Spark error in the task log: the feature job, an input table, or the Spark cluster.",
    "train": "Read the task log: MLflow (tracking server or store) or the model's fit. An MLflow run left open "
    "is closed as KILLED by the next try. The champion is untouched.",
    "evaluate": "Check MLflow (the champion must load) and the holdout file; the champion is untouched.",
    "promote": "Check the MLflow registry; the champion alias has not moved unless the log says so.",
    "compute_drift": "Check MLflow (the champion's run) and the pipeline's storage; drift was not measured.",
    "publish_drift": "The drift event was not sent; re-run the monitor DAG.",
    "approve": "Nobody answered in time: the champion is kept. Re-run the train DAG to ask again.",
}


def format_generic(facts: AlertFacts) -> AlertEmail:
    """Any other failure (storage, MLflow, Spark, a bug): the task, the error and what to do."""
    first = facts.error.strip().splitlines()[0][:120] if facts.error.strip() else "see the task log"
    subject = f"{SUBJECT_PREFIX} {facts.pipeline}: {facts.task_id} failed: {first}"
    todo = _e(NEXT_STEPS.get(facts.task_id, "Read the task log in Airflow; fix the cause and clear the task to retry."))
    return AlertEmail(subject, _page(f"{facts.task_id} failed for {facts.pipeline}", [], facts, todo))


FORMATTERS = {
    "gate": format_gate,
    "validation": format_validation,
    "deploy": format_deploy,
    "drift": format_drift,
}


def compose(facts: AlertFacts) -> AlertEmail:
    """The email for an alert kind; a generic one when the facts are missing or unknown."""
    formatter = FORMATTERS.get(facts.kind)
    if formatter is None or not facts.data:
        return format_generic(facts)
    return formatter(facts)


# --- Airflow glue -----------------------------------------------------------------------------


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
    facts.links.append(Link("Airflow task log", getattr(ti, "log_url", None) or urls.task_url(dag_id, run_id, task_id)))
    facts.links.append(Link("Airflow run", urls.dag_run_url(dag_id, run_id, base)))
    store_base = None
    loaded = None
    if spec_path:
        try:
            from sluice.services.storage import PipelineStore
            from sluice.spec.loader import load_spec

            loaded = load_spec(spec_path)
            store = PipelineStore(loaded.resolve(loaded.spec.storage.root), pipeline)
            store_base = store.base
        except Exception as exc:  # the email still goes out, only without the storage links
            log.warning("alert: cannot load spec %s for links: %s", spec_path, exc)

    def report(label: str, path: Any) -> None:
        if path:
            url = urls.report_url(pipeline, store_base, path, base) if store_base is not None else None
            facts.links.append(Link(label, url, str(path)))

    data = facts.data if isinstance(facts.data, dict) else {}
    if kind == "gate":
        cand = (data.get("candidate") or {}).get("run_id")
        champ = (data.get("champion") or {}).get("run_id")
        if cand:
            facts.links.append(Link("MLflow run (candidate)", urls.mlflow_run_url(cand)))
        if champ:
            facts.links.append(Link("MLflow run (champion)", urls.mlflow_run_url(champ)))
        if store_base is not None:
            report("Decision record", store.run_dir(run_id) / "decision.json")
    elif kind == "validation":
        if loaded is not None:
            facts.extra["max_quarantine_rate"] = loaded.spec.validation.max_quarantine_rate
        for o in data.get("outcomes") or []:
            if o.get("status") != "accepted":
                report(f"Validation report, batch {o.get('batch_id')}", o.get("report"))
    elif kind == "deploy":
        evaluated = ti.xcom_pull(task_ids="evaluate") or {}
        cand = (evaluated.get("candidate") or {}).get("run_id")
        if cand:
            facts.links.append(Link("MLflow run (model being deployed)", urls.mlflow_run_url(cand)))
        if loaded is not None:
            from sluice.airflow.kubernetes import cluster_connector
            from sluice.steps.targets import target_for

            facts.extra["target"] = loaded.spec.deployment.target

            # The target answers from its own source of truth (the cluster for kubernetes);
            # no probe of a local process here: the record is what the failed deploy left.
            target = target_for(loaded, connect=cluster_connector(loaded))
            facts.extra["serving"] = target.served(probe=False).facts()
        if store_base is not None:
            facts.links.append(Link("Deploy folder (server logs)", None, str(store.deploy_dir)))
    elif kind == "drift":
        if data.get("mlflow_run_id"):
            facts.links.append(Link("MLflow run (drift)", urls.mlflow_run_url(data["mlflow_run_id"])))
        report("Drift report", data.get("report_path"))
    return facts


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


class AlertNotifier(SmtpNotifier):
    """Task-level failure callback that emails a sluice alert through the SMTP provider.

    The subject and body are built from the failed task's context (never Jinja templates), then
    sent by :class:`SmtpNotifier` with connection ``smtp_conn_id``; the sender comes from the
    connection's ``from_email`` extra. Any error while composing or sending is logged as
    ``alert email not sent: ...`` and swallowed: an alert must never change a task's outcome.

    Args:
        alert: Alert kind ('validation', 'gate', 'deploy', 'drift', or 'failure' for any other step).
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
            facts = gather_facts(self.alert, self.pipeline, self.spec_path, context)
            if self.alert == "failure" and _repeated(facts):
                log.info("alert email not sent: the same failure of %s was alerted recently", facts.task_id)
                return
            email = compose(facts)
            # A fresh notifier per email: this one is shared by every run of the task.
            _TwoPartNotifier(
                to=self.to,
                subject=email.subject,
                html_content=email.html,
                text=email.text,
                smtp_conn_id=self.smtp_conn_id,
                custom_headers={"X-Sluice-Alert": self.alert, "X-Sluice-Pipeline": self.pipeline},
            ).notify(context)
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
