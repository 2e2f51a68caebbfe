"""Alert emails as text: the facts of a failure in, a subject and a body out (pure, no Airflow).

The formatting functions (``format_*``, :func:`compose`) take an :class:`AlertFacts` holding
the step's result as its typed record (decoded once, where the facts are gathered) and
return an :class:`AlertEmail`, unit-testable without Airflow or an SMTP server. A result
that could not be read leaves the record out and is named in the email instead. Each email
is sent as ``multipart/alternative``: a plain-text part (derived from the HTML by
:func:`html_to_text`, so both say the same) for text-only mail clients and pagers, then
the HTML part. Gathering the facts from a failed task and sending the email is
:mod:`sluice.airflow.notifications.alerts`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sluice.steps.records import Check, GateDecision, GateThresholds, Record

R = TypeVar("R", bound="Record")

SUBJECT_PREFIX = "[sluice]"
#: Which task's XCom holds the facts of each alert kind (the contract with the plan).
FACT_TASKS = {
    "validation": "validate",
    "gate": "evaluate",
    "deploy": "promote",
    "drift": "compute_drift",
    "landing": "land",
}


def fact_record(kind: str) -> type[Record] | None:
    """The record type of the result an alert kind reads from :data:`FACT_TASKS` (None: it reads none)."""
    from sluice.steps import records

    kinds: dict[str, type[Record]] = {
        "validation": records.ValidationOutcomes,
        "gate": records.GateDecision,
        "deploy": records.PromoteResult,
        "drift": records.DriftResult,
        "landing": records.LandResult,
    }
    return kinds.get(kind)


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
        data: The result of the step that holds the numbers (see :data:`FACT_TASKS`), as its
            record (:func:`fact_record`); None when it is missing or could not be read.
        extra: More facts per kind (e.g. ``max_quarantine_rate``, ``serving``).
        links: Airflow, MLflow and report links.
        unread: Step results that could not be read, each with why (the email names them).
    """

    kind: str
    pipeline: str
    dag_id: str
    task_id: str
    run_id: str
    error: str = ""
    data: Record | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)

    def record(self, cls: type[R]) -> R | None:
        """:attr:`data` when it is a ``cls`` record, else None."""
        return self.data if isinstance(self.data, cls) else None


def _data(facts: AlertFacts, cls: type[R]) -> R:
    """The facts' record, which :func:`compose` checked is a ``cls``."""
    found = facts.record(cls)
    if found is None:
        raise TypeError(f"a {facts.kind} alert needs a {cls.__name__}, not {type(facts.data).__name__}")
    return found


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
    if facts.unread:
        parts.append(
            "<h3>Could not read</h3><ul>" + "".join(f"<li>{_e(_short(line))}</li>" for line in facts.unread) + "</ul>"
        )
    if facts.links:
        parts.append(_links_html(facts.links))
    if facts.error:
        parts.append(f"<h3>Error</h3><pre>{_e(facts.error)}</pre>")
    return "<html><body>" + "".join(parts) + "</body></html>"


#: Gate check name -> the spec setting whose threshold it holds the candidate to.
_CHECK_SETTING = {
    "floor": "gate.min",
    "ceiling": "gate.max",
    "vs_champion": "gate.max_regression_vs_champion",
    "champion": "the champion (could not be scored on this holdout)",
}


def _short(line: str, limit: int = 400) -> str:
    """A line cut to ``limit`` characters (an unreadable value is quoted in its error)."""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _requirement(thresholds: GateThresholds, bar: float | None, higher: bool) -> str:
    """What the candidate needed to pass, with the setting each bound comes from.

    Of the absolute bounds and the champion's bar, the tighter one on each side decides: a
    ceiling of 60 beats a champion bar of 85.33 for an error metric, and the email says so.
    """
    lows: list[tuple[float, str]] = []
    highs: list[tuple[float, str]] = []
    if thresholds.min is not None:
        lows.append((thresholds.min, "gate.min"))
    if thresholds.max is not None:
        highs.append((thresholds.max, "gate.max"))
    if bar is not None:
        (lows if higher else highs).append((bar, f"champion {'&minus;' if higher else '+'} max_regression_vs_champion"))
    low = max(lows) if lows else None
    high = min(highs) if highs else None
    if low is not None and high is not None:
        return f"&ge; {_num(low[0])} ({low[1]}) and &le; {_num(high[0])} ({high[1]})"
    if low is not None:
        return f"&ge; {_num(low[0])} ({low[1]})"
    if high is not None:
        return f"&le; {_num(high[0])} ({high[1]})"
    return "n/a"


def decided_by(checks: list[Check]) -> str:
    """The failed checks, each with the setting that holds its threshold (the gate email's first line)."""
    failed = [c for c in checks if not c.passed]
    return "; ".join(f"{c.detail} ({_CHECK_SETTING.get(c.name, c.name)})" for c in failed)


def _gate_tables(d: GateDecision) -> tuple[str, str]:
    """The gate email's two tables: candidate vs champion, and the thresholds it was held to."""
    cand, champ, thresholds, higher = d.candidate, d.champion, d.thresholds, d.higher_is_better
    allowed = thresholds.max_regression_vs_champion
    champ_score = champ.score if champ is not None else None
    bar = None
    if champ_score is not None:
        bar = champ_score - allowed if higher else champ_score + allowed
    numbers = _table(
        [
            ["metric", f"<code>{_e(d.metric)}</code> ({'higher' if higher else 'lower'} is better), same holdout"],
            ["candidate", f"{_num(cand.score)} (MLflow run <code>{_e(cand.run_id)}</code>)"],
            [
                "champion",
                f"v{_e(champ.version)}: {_num(champ.score)} (MLflow run <code>{_e(champ.run_id)}</code>)"
                if champ is not None and champ.version
                else "none yet",
            ],
            ["difference", _num(cand.score - champ_score) if champ_score is not None else "n/a"],
        ]
    )
    limits = _table(
        [
            ["floor (gate.min)", _num(thresholds.min)],
            ["ceiling (gate.max)", _num(thresholds.max)],
            ["max_regression_vs_champion", _num(allowed)],
            [
                "champion bar",
                f"{'&ge;' if higher else '&le;'} {_num(bar)} "
                f"(champion {'&minus;' if higher else '+'} allowed regression)"
                if bar is not None
                else "n/a",
            ],
            ["candidate needed", _requirement(thresholds, bar, higher)],
        ]
    )
    return numbers, limits


def format_gate(facts: AlertFacts) -> AlertEmail:
    """The gate refused the candidate: candidate vs champion, thresholds and every check."""
    from sluice.steps.records import GateDecision

    d = _data(facts, GateDecision)
    champ = d.champion if d.champion is not None and d.champion.version else None
    kept = f"champion v{champ.version}" if champ else "no champion (none yet)"
    subject = (
        f"{SUBJECT_PREFIX} {facts.pipeline}: gate failed, candidate {d.metric} {_num(d.candidate.score)}"
        + (f" vs champion v{champ.version} {_num(champ.score)}" if champ else "")
        + f"; {kept} kept"
    )
    numbers, limits = _gate_tables(d)
    checks = _table(
        [["passed" if c.passed else "<b>FAILED</b>", _e(c.name), _e(c.detail)] for c in d.checks],
        header=["result", "check", "detail"],
    )
    holdout = d.holdout
    decider = decided_by(d.checks)
    sections = [
        f"<p>The candidate was <b>not promoted</b>: {_e(d.reason)}.</p>",
        *([f"<p><b>Decided by:</b> {_e(decider)}.</p>"] if decider else []),
        f"<p><b>What stays safe:</b> {_e(kept)} and the running deployment are untouched.</p>",
        "<h3>Candidate vs champion</h3>" + numbers,
        "<h3>Thresholds</h3>" + limits,
        "<h3>Checks</h3>" + checks,
        f"<p>Holdout: {_e(holdout.rows)} rows ({_e(holdout.split)})"
        + _batches_text(d.candidate.trained_on, holdout.batches)
        + ".</p>",
    ]
    todo = (
        "Open the candidate's MLflow run and compare it with the champion's; change the data, the "
        "features or the model and retrain (<code>airflow dags trigger "
        f"{_e(facts.pipeline)}__train</code>). Nothing needs rolling back."
    )
    return AlertEmail(subject, _page(f"Gate failed for {facts.pipeline}", sections, facts, todo))


def format_validation(facts: AlertFacts) -> AlertEmail:
    """Batches were rejected: each with its reason, quarantine numbers and report."""
    from sluice.steps.records import BatchStatus, ValidationOutcomes

    outcomes = [o for o in _data(facts, ValidationOutcomes).outcomes if o.status != BatchStatus.ACCEPTED]
    limit = facts.extra.get("max_quarantine_rate")
    over = [o for o in outcomes if "quarantine rate" in o.reason]
    what = "quarantine rate exceeded" if over and len(over) == len(outcomes) else "batch rejected"
    subject = (
        f"{SUBJECT_PREFIX} {facts.pipeline}: validation failed, {len(outcomes) or 'a'} batch(es) rejected ({what})"
    )
    rows = []
    for o in outcomes:
        rows.append(
            [
                f"<code>{_e(o.batch_id)}</code>",
                _e(o.reason),
                _e(o.rows),
                f"{_e(o.quarantined)} ({_pct(o.quarantine_rate)}; max {_pct(limit)})",
                "<br>".join(_e(c) for c in o.failed_checks) or "none",
                f"<code>{_e(o.report)}</code>",
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
        "the landing folder; a file with the same content is never landed twice. If the data was right and the "
        "spec was wrong, fix the spec and run <code>sluice revalidate &lt;spec&gt; &lt;batch id&gt;</code>: the "
        "next ingest run validates the batch again."
    )
    return AlertEmail(subject, _page(f"Validation failed for {facts.pipeline}", sections, facts, todo))


def format_deploy(facts: AlertFacts) -> AlertEmail:
    """A deploy failed: which version, why, and what keeps serving."""
    from sluice.steps.records import PromoteResult

    promoted = _data(facts, PromoteResult)
    version = promoted.version
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
        ["previous champion", f"v{_e(promoted.previous)}" if promoted.previous else "none"],
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
    # The target's own words (HTML it wrote, see sluice.steps.targets.FailureLogs).
    where_log = facts.extra.get("failure_logs") or "the deploy task's log"
    todo = (
        f"Read {where_log}, fix the cause (port, image, dependencies, resources) and clear the "
        "<code>deploy</code> task in Airflow to retry; a retry of a version that is already healthy is a no-op."
    )
    return AlertEmail(subject, _page(f"Deploy failed for {facts.pipeline}", sections, facts, todo))


def format_drift(facts: AlertFacts) -> AlertEmail:
    """Drift beyond the threshold: share, threshold and every column's score."""
    from sluice.steps.records import DriftResult

    d = _data(facts, DriftResult)
    columns, drifted = d.columns, d.drifted_columns()
    subject = (
        f"{SUBJECT_PREFIX} {facts.pipeline}: drift detected, {len(drifted)} of {len(columns)} columns drifted "
        f"(share {_pct(d.drift_share)} > threshold {_pct(d.threshold)})"
    )
    ordered = sorted(columns, key=lambda c: (not c.drifted, c.column))
    table = _table(
        [
            [
                f"<code>{_e(c.column)}</code>",
                _e(c.method),
                _num(c.score),
                _num(c.threshold),
                "<b>drifted</b>" if c.drifted else "ok",
            ]
            for c in ordered
        ],
        header=["column", "method", "score", "threshold", "verdict"],
    )
    sections = [
        f"<p>The newest data differs from the data champion v{_e(d.champion_version)} was trained on: "
        f"{_pct(d.drift_share)} of the columns drifted, the threshold is {_pct(d.threshold)}.</p>",
        f"<p>Batches compared: {', '.join(f'<code>{_e(b)}</code>' for b in d.batches) or 'n/a'}.</p>",
        "<h3>Columns</h3>" + table,
        "<p><b>What stays safe:</b> the champion keeps serving; drift does not change it by itself.</p>",
    ]
    todo = (
        "Open the drift report. If the change is real (a new season, a new source), retrain "
        f"(<code>airflow dags trigger {_e(facts.pipeline)}__train</code>, or let <code>retrain_on: [drift]</code> "
        "do it); if it is a data bug, fix it upstream."
    )
    return AlertEmail(subject, _page(f"Drift detected for {facts.pipeline}", sections, facts, todo))


def _batches_text(trained_on: list[str] | None, held_out: list[str] | None) -> str:
    """'; trained on a, b; held out c' from a decision record (empty for records from before these fields)."""
    if not trained_on and not held_out:
        return ""
    return (
        f"; trained on {_e(', '.join(trained_on or []) or 'none')}; held out {_e(', '.join(held_out or []) or 'none')}"
    )


def format_landing(facts: AlertFacts) -> AlertEmail:
    """``land`` refused inputs, or found an archived file changed after it was landed (the run itself succeeded)."""
    from sluice.steps.records import LandResult

    d = _data(facts, LandResult)
    refused, changed = d.refused, d.changed_after_landing
    what = []
    if refused:
        what.append(f"{len(refused)} input(s) refused")
    if changed:
        what.append(f"{len(changed)} landed file(s) changed after landing")
    subject = f"{SUBJECT_PREFIX} {facts.pipeline}: landing: {', '.join(what)}"
    sections = []
    if refused:
        rows = [
            [
                f"<code>{_e(name)}</code>",
                _e(why),
                "left in the landing folder" if "hidden name" in str(why) else "moved to <code>_rejected/</code>",
            ]
            for name, why in refused.items()
        ]
        sections += [
            "<p>These inputs in the landing folder match <code>source.pattern</code> but are <b>not landed</b>:</p>",
            _table(rows, header=["input", "why", "where it is now"]),
        ]
    if changed:
        rows = [[f"<code>{_e(new)}</code>", f"<code>{_e(old)}</code>"] for new, old in changed.items()]
        sections += [
            "<p>A file was written to <b>after</b> it had been landed and archived (its writer paused longer "
            "than <code>detect.settle_seconds</code>). Its complete content was landed as a new batch, which "
            "supersedes the first part: training reads the complete rows, once.</p>",
            _table(rows, header=["new batch (complete file)", "supersedes (first part)"]),
        ]
    sections.append(
        "<p><b>What stays safe:</b> nothing was lost; <code>sluice status</code> lists each refused input "
        "with its reason.</p>"
    )
    todo = (
        "Refused inputs: drop each batch as one regular file with a plain name (no folder, no symlink, no "
        "leading dot). Changed after landing: have the producer write under a temporary name and rename the "
        "finished file into the landing folder, or write a completion marker (<code>detect.marker</code>)."
    )
    return AlertEmail(subject, _page(f"Landing news for {facts.pipeline}", sections, facts, todo))


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
    "refit": "Nothing was promoted: the champion stays. If the refit was worse than the evaluated candidate on its "
    "training rows (the error gives both scores), look at the holdout batch's labels; training.refit: none "
    "promotes the evaluated model instead. Otherwise read the task log (MLflow, the fit) and clear the task.",
    "promote": "Check the MLflow registry; the champion alias has not moved unless the log says so.",
    "compute_drift": "Check MLflow (the champion's run) and the pipeline's storage; drift was not measured.",
    "publish_drift": "The drift event was not sent; re-run the monitor DAG.",
    "alert_drift": "The drift alert email was not sent: check the SMTP connection smtp_default and the spec's "
    "alerts.email. The drift itself is recorded (drift.json, the MLflow run 'monitor <run>') and the drift event "
    "was published by publish_drift. Clear this task to send the email once SMTP works.",
    "approve": "Nobody answered in time: the champion is kept. Re-run the train DAG to ask again.",
    "watch_serving": "Read the task log (what was wrong, what was stopped and started) and the model server's "
    "log in the deploy folder. When it says restarted, the recorded version serves again: find why its server "
    "died (memory, a kill). When it could not restart, clear the train DAG's deploy task once the cause is "
    "fixed; `sluice status SPEC` says what serves now.",
}


def format_generic(facts: AlertFacts) -> AlertEmail:
    """Any other failure (storage, MLflow, Spark, a bug): the task, the error and what to do.

    Also the email of an alert whose step result could not be read (:attr:`AlertFacts.unread`):
    it says so; when the task did not fail (``land``'s news), it does not say it failed.
    """
    todo = _e(NEXT_STEPS.get(facts.task_id, "Read the task log in Airflow; fix the cause and clear the task to retry."))
    if facts.unread and not facts.error.strip():
        subject = f"{SUBJECT_PREFIX} {facts.pipeline}: {facts.task_id}: its result could not be read"
        title = f"{facts.task_id}: its result could not be read ({facts.pipeline})"
        return AlertEmail(subject, _page(title, [], facts, todo))
    first = facts.error.strip().splitlines()[0][:120] if facts.error.strip() else "see the task log"
    subject = f"{SUBJECT_PREFIX} {facts.pipeline}: {facts.task_id} failed: {first}"
    return AlertEmail(subject, _page(f"{facts.task_id} failed for {facts.pipeline}", [], facts, todo))


#: Alert kind of a task that died without reporting (killed by a signal, or lost with its worker).
KILLED = "killed"


def format_killed(facts: AlertFacts) -> AlertEmail:
    """A task died on its last try without running its own failure alert: who, which try, what killed it.

    ``facts.extra`` holds ``try_number`` and ``tries`` (the try that died and how many the task
    has) and ``death``: what the task's supervisor saw (``signal 9 (SIGKILL)``, ``exit code 137``),
    or None when nothing was recorded (the supervisor died too, or the log is elsewhere).
    """
    tried = facts.extra.get("try_number")
    tries = facts.extra.get("tries")
    recorded = facts.extra.get("death")
    death = str(recorded or "no exit recorded")
    which = f"try {tried} of {tries}" if tried and tries else (f"try {tried}" if tried else "its last try")
    subject = f"{SUBJECT_PREFIX} {facts.pipeline}: {facts.task_id} was killed on its last try ({which}): {death}"
    oom = "SIGKILL" in death
    ended = (
        _e(recorded)
        if recorded
        else "nothing recorded: the process stopped without reporting (killed together with its supervisor, "
        "its worker lost, or its machine; Airflow failed the try when its heartbeat stopped), or its log is "
        "on another machine"
    )
    rows = [
        ["task", f"<code>{_e(facts.task_id)}</code> (DAG <code>{_e(facts.dag_id)}</code>)"],
        ["try", f"{_e(which)}: the last one, Airflow does not retry it again"],
        ["what ended it", ended],
    ]
    sections = [
        f"<p>The task process of <code>{_e(facts.task_id)}</code> <b>died without reporting an error</b>, so "
        "its own failure alert could not run (a killed process runs no code). sluice's run watch found the "
        "task failed for good with no alert sent, and sends this one.</p>",
        _table(rows),
        "<p>A <b>SIGKILL</b> is what the kernel's out-of-memory killer sends (and <code>kill -9</code>, or a "
        "container runtime at its memory limit: exit code 137). When no signal is known, the task's worker "
        "or machine was lost with it: Airflow failed the try once its heartbeat stopped.</p>"
        if oom or not recorded
        else "",
    ]
    safe = NEXT_STEPS.get(facts.task_id, "Read the task log in Airflow; fix the cause and clear the task to retry.")
    todo = (
        (
            "Check the machine's kernel log for <code>Out of memory: Killed process</code> (<code>dmesg</code>, "
            "<code>journalctl -k</code>) and give the worker more memory, or make the step's work smaller. "
            if oom
            else "Check the worker that ran the task (its log, its machine). "
        )
        + "Then clear the task: a killed step's retry is safe (see Crashes on the docs' Failures and alerts page). "
        + _e(safe)
    )
    return AlertEmail(subject, _page(f"{facts.task_id} was killed ({facts.pipeline})", sections, facts, todo))


FORMATTERS = {
    "gate": format_gate,
    "validation": format_validation,
    "deploy": format_deploy,
    "drift": format_drift,
    "landing": format_landing,
    KILLED: format_killed,
}


def compose(facts: AlertFacts) -> AlertEmail:
    """The email for an alert kind; a generic one when the record it needs is missing or the kind is unknown."""
    formatter = FORMATTERS.get(facts.kind)
    record = fact_record(facts.kind)
    if formatter is None or (record is not None and not isinstance(facts.data, record)):
        return format_generic(facts)
    return formatter(facts)
