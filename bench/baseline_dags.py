"""Baseline for the parse-time benchmark: the same three DAGs and tasks, hand-written.

No spec, no pydantic, no plan: what a careful Airflow user would write for the demo
pipeline, with what sluice sets on each DAG and task too: tags, owner and docs; each task's
retries, retry delay, timeout, pool, doc and arguments, and an alert email on failure (the
SMTP provider's notifier, one per task as sluice has). sluice's DAG file is measured against
this in the same run.
"""

from datetime import datetime, timedelta

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.sdk import DAG, Asset

SPEC = "/tmp/specs/flights_delay.pipeline.yaml"


def _noop(**_: object) -> None:
    return None


def _task(
    task_id: str,
    doc: str,
    timeout_minutes: int,
    alert: str = "failure",
    op_kwargs: dict[str, object] | None = None,
    retries: int = 2,
    **extra: object,
) -> PythonOperator:
    return PythonOperator(
        task_id=task_id,
        python_callable=_noop,
        op_kwargs={"spec_path": SPEC, **(op_kwargs or {})},
        retries=retries,
        retry_delay=timedelta(seconds=20),
        execution_timeout=timedelta(minutes=timeout_minutes),
        doc_md=doc,
        on_failure_callback=[
            SmtpNotifier(
                to="ml-oncall@example.com", subject=f"flights_delay: {alert} in {task_id}", html_content="{{ ti }}"
            )
        ],
        **extra,
    )


def _publish(task_id: str, doc: str, asset: Asset) -> PythonOperator:
    """A task that announces ``asset`` (an asset event), as sluice's publish tasks do."""
    return _task(task_id, doc, 10, outlets=[asset], op_kwargs={"asset_uri": asset.uri})


batches = Asset("sluice://flights_delay/batches")
drift = Asset("sluice://flights_delay/drift")


def _dag(kind: str, schedule: object, doc: str) -> DAG:
    return DAG(
        f"flights_delay__{kind}",
        schedule=schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["sluice", "demo", kind, "pipeline:flights_delay"],
        default_args={"owner": "data-eng"},
        doc_md=f"Hand-written from `{SPEC}`.\n\nflights_delay: {doc}",
    )


with _dag("ingest", "@continuous", "land new files from data/landing/flights_delay, validate, publish") as ingest:
    wait = FileSensor(
        task_id="wait_for_files",
        filepath="/tmp/landing/*.parquet",
        deferrable=True,
        poke_interval=5,
        timeout=3600,
        soft_fail=True,
        retries=2,
        retry_delay=timedelta(seconds=20),
        doc_md="Deferred wait (no worker slot) until a batch file lands.",
    )
    land = _task(
        "land",
        "Copy each new file into the raw zone keyed by content hash; archive it.",
        60,
        op_kwargs={"landing": {"source": "local", "glob": "/tmp/landing/*.parquet"}},
    )
    validate = _task("validate", "Great Expectations checks; quarantine or reject per the spec.", 120)
    publish = _publish("publish", "Announce accepted batches (asset event); skipped when none.", batches)
    confirm = _task(
        "confirm_published", "Mark the announced batches published, once Airflow has committed the asset event.", 10
    )
    check = _task(
        "check_batches", "Fail the run, with the report path, if a batch was rejected.", 5, "validation", retries=0
    )
    wait >> land >> validate >> [publish, check]
    publish >> confirm

with _dag("train", drift, "features, train, gate against the champion, promote, deploy") as train:
    (
        _task("check_trigger", "Say what started the run; skip it (cooldown, no new data since the last retrain).", 15)
        >> _task("build_features", "PySpark feature job over every accepted batch.", 240, pool="sluice_spark")
        >> _task("train", "Fit the candidate; MLflow run with lineage.", 360)
        >> _task("evaluate", "Score candidate and champion on the same holdout; write the decision record.", 60)
        >> _task(
            "gate", "Fail here when the candidate does not beat the gate; the champion is kept.", 5, "gate", retries=0
        )
        >> _task("promote", "Register the candidate and move the champion alias.", 15)
        >> _task("deploy", "Serve the champion (local).", 12, "deploy")
    )

with _dag("monitor", batches, "drift of each new batch against the champion's training data (Evidently)") as monitor:
    compute = _task("compute_drift", "Evidently drift report of the new batches vs the champion's reference data.", 60)
    publish_drift = _publish(
        "publish_drift", "Announce drift (asset event with the numbers); skipped when share < 0.15.", drift
    )
    alert_drift = _task(
        "alert_drift",
        "Email the drift alert (numbers, report) when the batch drifted; skipped otherwise. "
        "Drift keeps the run green; an email that cannot be sent fails this task.",
        5,
        op_kwargs={"to": ["ml-oncall@example.com"], "smtp_conn_id": "smtp_default"},
    )
    compute >> [publish_drift, alert_drift]
