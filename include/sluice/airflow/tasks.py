"""Task callables: thin adapters from Airflow context to step functions.

Each callable reloads the spec from its file, so a task always runs what the spec says
now, and records the spec hash it ran with. Heavy libraries load inside the steps, at
run time, never when the DAG file is parsed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypeVar

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from sluice.airflow.runtime.connections import open_pipeline_store
from sluice.plan.model import Landing, S3Landing, landing_from
from sluice.plan.task_ids import TaskId
from sluice.services import faults
from sluice.services.landing import Inbox, LocalInbox, S3Inbox
from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec, load_spec
from sluice.steps.records import (
    AssetEvent,
    BatchAnnouncement,
    BatchStatus,
    DriftResult,
    FeatureResult,
    GateDecision,
    PromoteResult,
    Record,
    RefitResult,
    ServingStatus,
    TrainResult,
    ValidationOutcomes,
    decode,
    decode_or_none,
    encode,
)

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)


def _open(spec_path: str) -> tuple[LoadedSpec, PipelineStore]:
    loaded = load_spec(spec_path)
    return loaded, open_pipeline_store(loaded)


def _pull(context: dict[str, Any], task: TaskId, record: type[R]) -> R:
    """The ``task``'s XCom return value in this run, decoded as ``record``.

    Raises:
        AirflowFailException: ``task`` left no value (it was skipped or never ran).
    """
    value = context["ti"].xcom_pull(task_ids=str(task))
    if value is None:
        raise AirflowFailException(f"task {task} left no {record.__name__} in this run")
    return decode(record, value)


def inbox_for(landing: Landing, settle_seconds: float = 0.0, marker: str | None = None, csv: bool = False) -> Inbox:
    """The landing zone a ``land`` task reads, from the plan's landing settings.

    For S3 the boto3 client comes from the amazon provider's hook, so endpoint, keys and
    region are whatever the Airflow connection says. ``csv``: batches are CSV (a local file
    whose last line has no line end is held).
    """
    if isinstance(landing, S3Landing):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        client = S3Hook(aws_conn_id=landing.conn_id).get_conn()
        return S3Inbox(client, landing.bucket, landing.prefix, landing.pattern, marker=marker)
    glob = Path(landing.glob)
    return LocalInbox(glob.parent, glob.name, settle_seconds=settle_seconds, marker=marker, csv=csv)


def land(spec_path: str, landing: dict[str, Any], **context: Any) -> dict[str, Any]:
    """Land new complete files (see :func:`sluice.steps.ingest.land_new_files`)."""
    from sluice.services.landing import printable
    from sluice.steps.ingest import land_new_files, rejected_duplicate_message

    loaded, store = _open(spec_path)
    for stale in store.clean_stale():
        log.info("removed a temporary left by a killed writer: %s", stale)
    source = loaded.spec.source
    detect = source.detect
    inbox = inbox_for(landing_from(landing), detect.settle_seconds, detect.marker, csv=source.format == "csv")
    result = land_new_files(inbox, store, context["run_id"])
    for name, batch_id in result.duplicates.items():
        if name in result.rejected_again:
            log.warning(rejected_duplicate_message(name, store.batches.get(batch_id), spec_path))
        else:
            log.info("%s has the content of batch %s, already landed: nothing to do", printable(name), batch_id)
    log.info("landed %d new batch(es): %s", len(result.new), result.new)
    return encode(result)


def validate(spec_path: str, **context: Any) -> dict[str, Any]:
    """Validate every landed batch that has no outcome yet."""
    from sluice.steps.ingest import pending_batches
    from sluice.steps.validate import validate_batch

    loaded, store = _open(spec_path)
    source = loaded.spec.source
    outcomes = []
    for batch_id in pending_batches(store):
        outcome = validate_batch(store, batch_id, loaded.spec.validation, source.format, columns=source.columns)
        log.info("batch %s: %s (%s) report: %s", batch_id, outcome.status, outcome.reason, outcome.report)
        outcomes.append(outcome)
    return encode(ValidationOutcomes(outcomes=outcomes))


def publish(spec_path: str, asset_uri: str, **context: Any) -> dict[str, Any]:
    """Emit one asset event for accepted batches not yet announced; skip when there are none.

    Nothing is marked here: Airflow commits the event only when this task succeeds, so a
    batch marked now and a task killed before success would be an announcement lost for
    good. ``confirm_published`` marks them once the event exists; until then every run
    (or retry) announces them again (at least once; the monitor and ``check_trigger`` skip
    batches they have already seen).
    """
    from airflow.sdk import Asset

    _, store = _open(spec_path)
    fresh = [r for r in store.batches.accepted() if not r.published]
    if not fresh:
        raise AirflowSkipException("no newly accepted batch: nothing to announce")
    extra = encode(
        BatchAnnouncement(
            batches=[r.batch_id for r in fresh],
            rows=sum(r.rows for r in fresh),
            quarantined=sum(r.quarantined for r in fresh),
        )
    )
    context["outlet_events"][Asset(asset_uri)].extra = extra
    log.info("announcing %s on %s", extra, asset_uri)
    faults.point("publish.event_set")
    return extra


def confirm_published(spec_path: str, **context: Any) -> dict[str, Any]:
    """Mark the batches ``publish`` announced, now that Airflow has committed its event."""
    _, store = _open(spec_path)
    announced = _pull(context, TaskId.PUBLISH, BatchAnnouncement)
    for batch_id in announced.batches:
        store.batches.update(batch_id, published=True, published_by_run=context["run_id"])
    log.info("marked published: %s", announced.batches)
    return {"published": announced.batches}


def check_batches(spec_path: str, **context: Any) -> dict[str, Any]:
    """Fail the run, naming each rejected batch, its reason and its report."""
    found = context["ti"].xcom_pull(task_ids=str(TaskId.VALIDATE))
    result = decode(ValidationOutcomes, found) if found is not None else ValidationOutcomes()
    rejected = [o for o in result.outcomes if o.status != BatchStatus.ACCEPTED]
    if rejected:
        lines = [f"batch {o.batch_id}: {o.reason} (report: {o.report})" for o in rejected]
        raise AirflowFailException(f"{len(rejected)} batch(es) rejected:\n" + "\n".join(lines))
    return {"checked": len(result.outcomes)}


def build_features(spec_path: str, **context: Any) -> dict[str, Any]:
    """Build the feature table of the batches in the training window (cached batches are read, not computed)."""
    from sluice.steps.features import NoDataError
    from sluice.steps.features import build_features as run

    loaded, store = _open(spec_path)
    try:
        result = run(loaded, store)
    except NoDataError as exc:
        raise AirflowFailException(str(exc)) from None
    log.info(
        "features %s: %d rows from %d batch(es), computed %s%s",
        result.key,
        result.rows,
        len(result.batches),
        ", ".join(result.computed) or "none (all cached)",
        " (reused)" if result.cached else "",
    )
    return encode(result)


def train(spec_path: str, **context: Any) -> dict[str, Any]:
    """Train the candidate and log it to MLflow; fail (no retries) when the fit would not fit in memory."""
    from sluice.steps.train import TrainingMemoryError, train_candidate

    loaded, store = _open(spec_path)
    features = _pull(context, TaskId.BUILD_FEATURES, FeatureResult)
    try:
        result = train_candidate(loaded, store, features, context["dag"].dag_id, context["run_id"])
    except TrainingMemoryError as exc:
        raise AirflowFailException(str(exc)) from None
    fitted = f"; fitted on {result.fitted.describe()}" if result.fitted else ""
    log.info("candidate run %s (%s%s)", result.mlflow_run_id, result.split, fitted)
    return encode(result)


def evaluate(spec_path: str, **context: Any) -> dict[str, Any]:
    """Score candidate and champion on the same holdout; write the decision record."""
    from sluice.steps.evaluate import evaluate_candidate

    loaded, store = _open(spec_path)
    decision = evaluate_candidate(loaded, store, _pull(context, TaskId.TRAIN, TrainResult), context["run_id"])
    log.info("gate verdict %s: %s", decision.verdict, decision.reason)
    return encode(decision)


def gate(spec_path: str, **context: Any) -> dict[str, Any]:
    """Fail (without retries) when the verdict is not pass."""
    from sluice.steps.evaluate import GateFailed, enforce_gate

    decision = _pull(context, TaskId.EVALUATE, GateDecision)
    try:
        enforce_gate(decision)
    except GateFailed as exc:
        raise AirflowFailException(str(exc)) from None
    return {"verdict": str(decision.verdict)}


def refit(spec_path: str, **context: Any) -> dict[str, Any]:
    """Fit the gated candidate again on train + holdout; fail (no retries) when the refit is worse."""
    from sluice.steps.refit import RefitWorse, refit_candidate
    from sluice.steps.train import TrainingMemoryError

    loaded, store = _open(spec_path)
    try:
        result = refit_candidate(
            loaded,
            store,
            _pull(context, TaskId.BUILD_FEATURES, FeatureResult),
            _pull(context, TaskId.TRAIN, TrainResult),
            _pull(context, TaskId.EVALUATE, GateDecision),
            context["dag"].dag_id,
            context["run_id"],
        )
    except (RefitWorse, TrainingMemoryError) as exc:
        raise AirflowFailException(str(exc)) from None
    log.info(
        "refit run %s on %d rows (batches %s): %s %.4f vs evaluated %.4f on its training rows",
        result.mlflow_run_id,
        result.rows,
        ", ".join(result.trained_on),
        result.metric,
        result.refit_score,
        result.evaluated_score,
    )
    return encode(result)


def promote(spec_path: str, **context: Any) -> dict[str, Any]:
    """Register the candidate (or its refit, with ``training.refit: after_gate``) and move the champion alias."""
    from sluice.steps.promote import promote as run

    loaded, _ = _open(spec_path)
    refitted = _pull(context, TaskId.REFIT, RefitResult) if loaded.spec.training.refit == "after_gate" else None
    result = run(loaded, _pull(context, TaskId.EVALUATE, GateDecision), refitted)
    log.info("champion: v%s (was v%s)%s", result.version, result.previous, "" if result.changed else " unchanged")
    return encode(result)


def deploy(spec_path: str, **context: Any) -> dict[str, Any]:
    """Serve the champion version on the spec's target (the ``deploy`` kind; kubernetes asks for its own)."""
    from sluice.steps.targets import target_for
    from sluice.steps.train import smoke_rows

    loaded, store = _open(spec_path)
    promoted = _pull(context, TaskId.PROMOTE, PromoteResult)
    trained = _pull(context, TaskId.TRAIN, TrainResult)
    result = target_for(loaded, store).deploy(
        promoted.version,
        previous=promoted.previous,
        run_id=str(context.get("run_id") or ""),
        smoke_rows=smoke_rows(store, trained.holdout_path, trained.features),
    )
    log.info("serving v%s (%s)", result.version, "new" if result.changed else "unchanged")
    return encode(result)


def _triggering_events(context: dict[str, Any]) -> list[AssetEvent]:
    """Asset events that started this run."""
    found = []
    for asset, events in (context.get("triggering_asset_events") or {}).items():
        uri = getattr(asset, "uri", str(asset))
        for event in events:
            found.append(AssetEvent(uri=uri, extra=dict(getattr(event, "extra", None) or {})))
    return found


def check_trigger(spec_path: str, **context: Any) -> dict[str, Any]:
    """Log what started the train run; skip it (cooldown, no new data) per the spec."""
    from sluice.plan.build import batches_asset, drift_asset
    from sluice.steps.retrain import check_trigger as decide
    from sluice.steps.retrain import triggers_of

    loaded, store = _open(spec_path)
    name = loaded.spec.pipeline
    events = _triggering_events(context)
    run_type = str(getattr(context["dag_run"], "run_type", "manual")).lower().rsplit(".", 1)[-1]
    triggers = triggers_of(run_type, [e.uri for e in events], batches_asset(name), drift_asset(name))
    decision = decide(loaded, store, triggers, events, context["run_id"])
    for event in events:
        log.info("started by asset event %s %s", event.uri, event.extra)
    if not decision.proceed:
        log.info("retrain skipped: %s", decision.reason)
        raise AirflowSkipException(f"retrain skipped: {decision.reason}")
    log.info("retraining: %s", decision.reason)
    return encode(decision)


def compute_drift(spec_path: str, **context: Any) -> dict[str, Any]:
    """Drift of the new batches against the champion's training data (Evidently)."""
    from sluice.steps.monitor import monitor_batches

    loaded, store = _open(spec_path)
    # Batches never monitored are compared anyway: an event whose extra is not publish's
    # announcement (one sent by hand) only adds nothing.
    announcements = [
        decode_or_none(BatchAnnouncement, e.extra, f"the asset event on {e.uri}") for e in _triggering_events(context)
    ]
    announced = [b for a in announcements if a is not None for b in a.batches]
    result = monitor_batches(loaded, store, announced, context["dag"].dag_id, context["run_id"])
    log.info("%s: %s", result.status, result.summary())
    for c in result.columns:
        log.info(
            "  %-20s %-32s score %.4f threshold %s%s",
            c.column,
            c.method,
            c.score,
            c.threshold,
            "  DRIFT" if c.drifted else "",
        )
    return encode(result)


def _drift_extra(result: DriftResult) -> dict[str, Any]:
    return {
        "drift_share": result.drift_share,
        "threshold": result.threshold,
        "drifted_columns": [c.column for c in result.drifted_columns()],
        "columns": {c.column: {"method": c.method, "score": c.score} for c in result.columns},
        "batches": result.batches,
        "champion_version": result.champion_version,
        "report_path": result.report_path,
        "mlflow_run_id": result.mlflow_run_id,
    }


def publish_drift(spec_path: str, asset_uri: str, **context: Any) -> dict[str, Any]:
    """Emit the drift asset event, carrying the numbers; skip when the batch did not drift."""
    from airflow.sdk import Asset

    result = _pull(context, TaskId.COMPUTE_DRIFT, DriftResult)
    if not result.drift_detected:
        raise AirflowSkipException(f"no drift: {result.reason or result.status}")
    extra = _drift_extra(result)
    context["outlet_events"][Asset(asset_uri)].extra = extra
    log.info("announcing drift on %s: %s", asset_uri, extra)
    return extra


def alert_drift(spec_path: str, to: list[str], smtp_conn_id: str, **context: Any) -> dict[str, Any]:
    """Email the drift alert when the batch drifted; skip otherwise.

    Drift is news, not a failure: the monitor run stays green and the email (share, threshold,
    every column's method and score, the report and the MLflow run) says what moved. An email
    that cannot be sent fails this task, so it is retried and then shown red: an alert nobody
    received must not look like a quiet month. The drift itself is recorded either way
    (``drift.json``, the MLflow run, the drift asset event of ``publish_drift``).

    Args:
        spec_path: The spec file.
        to: Recipients (the spec's ``alerts.email``); empty: nothing is sent, the log says so.
        smtp_conn_id: Airflow connection of the SMTP server.
        context: The Airflow context.

    Raises:
        AirflowSkipException: The batch did not drift (or was not compared).
        RuntimeError: The email was not sent (retried like any task failure).
    """
    from sluice.airflow.notifications.alerts import gather_facts, send_alert

    result = _pull(context, TaskId.COMPUTE_DRIFT, DriftResult)
    if not result.drift_detected:
        raise AirflowSkipException(f"no drift: {result.reason or result.status}")
    pipeline = str(context["ti"].dag_id).rsplit("__", 1)[0]
    log.warning("data drift in %s: %s", pipeline, result.summary())
    if not to:
        log.warning("no drift alert email: %s has no alerts.email; the drift asset event is the only notice", pipeline)
        return {"sent": False, "to": [], "subject": None}
    facts = gather_facts("drift", pipeline, spec_path, context, data=result)
    try:
        email = send_alert(facts, list(to), smtp_conn_id, context)
    except Exception as exc:
        raise RuntimeError(
            f"drift alert email not sent to {', '.join(to)} via connection {smtp_conn_id}: "
            f"{type(exc).__name__}: {exc}. The drift is recorded (report {result.report_path}, "
            f"MLflow run {result.mlflow_run_id}); fix the SMTP connection and clear this task to send it"
        ) from exc
    log.info("drift alert email sent to %s: %s", ", ".join(to), email.subject)
    return {"sent": True, "to": list(to), "subject": email.subject}


def watch_serving(spec_path: str, **context: Any) -> dict[str, Any]:
    """The target's look at its model server; restart the recorded version when down or wrong, then fail (alert)."""
    from sluice.steps.targets import target_for

    loaded, store = _open(spec_path)
    check = target_for(loaded, store).watch(say=log.info)
    for line in check.found:
        log.warning("found: %s", line)
    if check.status == ServingStatus.NOTHING:
        log.info("nothing deployed yet: nothing to watch")
    elif check.status == ServingStatus.HEALTHY:
        log.info("v%s serves as recorded", check.version)
    elif check.status == ServingStatus.RESTARTED:
        # Failed on purpose: the outage is an incident a person hears of (the alert), and the
        # run shows red in the UI; the next look is green again.
        raise AirflowFailException(
            f"model server of {loaded.spec.pipeline} was not serving as recorded: restarted v{check.version}, "
            "it answers again\n" + "\n".join(check.found)
        )
    else:
        raise AirflowFailException(
            f"model server of {loaded.spec.pipeline} is down and could not be restarted: {check.error}\n"
            + "\n".join(check.found)
        )
    return encode(check)
