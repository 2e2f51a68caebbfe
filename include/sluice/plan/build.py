"""Compile a loaded spec into a plan."""

from __future__ import annotations

import dataclasses

from sluice.plan.model import (
    ApprovalConfig,
    DagPlan,
    Landing,
    LocalLanding,
    PipelinePlan,
    PlanError,
    S3Landing,
    Schedule,
    Step,
    WatchConfig,
    make_config,
)
from sluice.spec.loader import LoadedSpec
from sluice.spec.plugins import PluginError
from sluice.spec.targets import Watch

SPARK_POOL = "sluice_spark"
#: Alert kind of every step without a more specific one: an infrastructure failure a person
#: must see (storage, MLflow, Spark, a bug), with the error and the next step.
FAILURE_ALERT = "failure"
#: Steps that never alert: the sensor's wait ends as skipped, never as a failure.
SILENT_STEPS = frozenset({"wait_for_files"})
#: Longest a try of each step may run: a store or server that stops answering fails the try
#: (and the retry, and then the alert) instead of holding a worker for ever. Generous on
#: purpose: they catch hangs, not slow days.
TIMEOUT_MINUTES = {
    "land": 60,
    "validate": 120,
    "publish": 10,
    "confirm_published": 10,
    "check_batches": 5,
    "check_trigger": 15,
    "build_features": 240,
    "train": 360,
    "evaluate": 60,
    "gate": 5,
    "refit": 360,
    "promote": 15,
    "compute_drift": 60,
    "publish_drift": 10,
    "alert_drift": 5,
}


def batches_asset(pipeline: str) -> str:
    """URI of the asset announcing new validated batches of a pipeline."""
    return f"sluice://{pipeline}/batches"


def drift_asset(pipeline: str) -> str:
    """URI of the asset announcing drift of new batches against the champion's data."""
    return f"sluice://{pipeline}/drift"


def landing_config(loaded: LoadedSpec) -> Landing:
    """Where the ingest DAG looks for new files: a local folder's glob, or an S3 prefix."""
    source = loaded.spec.source
    if source.is_s3:
        bucket, prefix = source.s3_location()
        return S3Landing(bucket=bucket, prefix=prefix, pattern=source.pattern, conn_id=source.aws_conn_id)
    return LocalLanding(glob=f"{loaded.resolve(source.uri)}/{source.pattern}")


def build_plan(loaded: LoadedSpec) -> PipelinePlan:
    """Compile a spec into its DAGs (``<pipeline>__ingest``, ``__train``, ``__monitor`` and ``__serving``).

    Args:
        loaded: A validated spec.

    Returns:
        The plan, ready for the Airflow renderer or ``sluice plan``.
    """
    spec = loaded.spec
    tags = ("sluice", f"pipeline:{spec.pipeline}", *spec.tags)
    dags: tuple[DagPlan, ...] = (_ingest_dag(loaded, tags), _train_dag(loaded, tags))
    if spec.monitoring.enabled:
        dags += (_monitor_dag(loaded, tags),)
    watch = spec.deployment.target_spec.watch(spec.deployment.settings)
    if watch is not None:
        dags += (_serving_dag(loaded, tags, watch),)
    dags = tuple(_with_defaults(d) for d in dags)
    return PipelinePlan(
        pipeline=spec.pipeline,
        spec_path=str(loaded.path),
        dags=dags,
        alert_emails=tuple(spec.alerts.email),
        owner=spec.owner,
    )


def _ingest_dag(loaded: LoadedSpec, tags: tuple[str, ...]) -> DagPlan:
    """``<pipeline>__ingest``: wait for files, land, validate, publish."""
    spec = loaded.spec
    name = spec.pipeline
    detect = spec.source.detect
    return DagPlan(
        dag_id=f"{name}__ingest",
        role="ingest",
        schedule=Schedule(cron=detect.schedule),
        tags=(*tags, "ingest"),
        description=f"{name}: land new files from {spec.source.uri}, validate, publish",
        steps=(
            _wait_step(loaded),
            Step(
                "land",
                "land",
                upstream=("wait_for_files",),
                doc="Copy each new file into the raw zone keyed by content hash; archive it.",
            ),
            Step(
                "validate",
                "validate",
                upstream=("land",),
                doc="Great Expectations checks; quarantine or reject per the spec.",
            ),
            Step(
                "publish",
                "publish",
                upstream=("validate",),
                outlets=(batches_asset(name),),
                doc="Announce accepted batches (asset event); skipped when none.",
            ),
            Step(
                "confirm_published",
                "confirm_published",
                upstream=("publish",),
                doc="Mark the announced batches published, once Airflow has committed the asset event.",
            ),
            Step(
                "check_batches",
                "check_batches",
                upstream=("validate",),
                retries=0,
                doc="Fail the run, with the report path, if a batch was rejected.",
                alert="validation",
            ),
        ),
    )


def _wait_step(loaded: LoadedSpec) -> Step:
    """``wait_for_files``: the deferred wait for a batch file (the landing zone and its polling)."""
    spec = loaded.spec
    detect = spec.source.detect
    return Step(
        "wait_for_files",
        "wait_for_files",
        doc="Deferred wait (no worker slot) until a batch file lands.",
        # Where the pipeline's batches are, so a batch stranded by a failed run (landed but not
        # validated, or accepted but not announced) wakes the next run by itself instead of
        # waiting for an unrelated new file.
        config=WatchConfig(
            landing=landing_config(loaded),
            poll_seconds=detect.poll_seconds,
            timeout_seconds=detect.timeout_seconds,
            marker=detect.marker or None,
            check_stranded=not spec.source.is_s3,
            settle_seconds=None if spec.source.is_s3 else detect.settle_seconds,
            csv=not spec.source.is_s3 and spec.source.format == "csv",
        ),
    )


def _approval_steps(loaded: LoadedSpec) -> tuple[Step, ...]:
    """The ``approve`` step after ``gate`` when promotion needs a person (``evaluation.approval: manual``)."""
    spec = loaded.spec
    approval: tuple[Step, ...] = ()
    if spec.evaluation.approval == "manual":
        approval = (
            Step(
                "approve",
                "approve",
                upstream=("gate",),
                retries=0,
                doc="A person approves or rejects promotion (Required Actions); reject or timeout keeps the champion.",
                config=ApprovalConfig(timeout_hours=spec.evaluation.approval_timeout_hours),
            ),
        )
    return approval


def _refit_steps(loaded: LoadedSpec, upstream: str) -> tuple[Step, ...]:
    """The ``refit`` step before ``promote`` when the spec says ``training.refit: after_gate``."""
    if loaded.spec.training.refit != "after_gate":
        return ()
    tolerance = loaded.spec.training.refit_tolerance
    return (
        Step(
            "refit",
            "refit",
            upstream=(upstream,),
            doc=(
                "Fit the gated candidate again on train + holdout (same estimator and params); it must not "
                f"score worse than the candidate on the candidate's training rows (tolerance {tolerance:g} of "
                "its score), else nothing is promoted and the champion stays."
            ),
        ),
    )


def _promote_step(before: tuple[Step, ...]) -> Step:
    """``promote``, after the gate or the optional steps that follow it (``approve``, ``refit``)."""
    refit = any(step.kind == "refit" for step in before)
    return Step(
        "promote",
        "promote",
        upstream=(before[-1].task_id if before else "gate",),
        doc=(
            "Register the refit model and move the champion alias to it."
            if refit
            else "Register the candidate and move the champion alias."
        ),
    )


def _train_dag(loaded: LoadedSpec, tags: tuple[str, ...]) -> DagPlan:
    """``<pipeline>__train``: features, train, evaluate, gate, (approve,) (refit,) promote, deploy."""
    spec = loaded.spec
    name = spec.pipeline
    approval = _approval_steps(loaded)
    refit = _refit_steps(loaded, upstream=approval[-1].task_id if approval else "gate")
    assets = tuple(
        uri
        for trigger, uri in (("new_data", batches_asset(name)), ("drift", drift_asset(name)))
        if trigger in spec.retrain_on
    )
    cron = spec.retrain_schedule if "schedule" in spec.retrain_on else None
    return DagPlan(
        dag_id=f"{name}__train",
        role="train",
        schedule=Schedule(cron=cron, assets=assets),
        tags=(*tags, "train"),
        description=f"{name}: features, train, gate against the champion, promote, deploy",
        steps=(
            Step(
                "check_trigger",
                "check_trigger",
                doc="Say what started the run; skip it (cooldown, no new data since the last retrain).",
            ),
            Step(
                "build_features",
                "build_features",
                upstream=("check_trigger",),
                pool=SPARK_POOL,
                doc="PySpark feature job over every accepted batch.",
            ),
            Step("train", "train", upstream=("build_features",), doc="Fit the candidate; MLflow run with lineage."),
            Step(
                "evaluate",
                "evaluate",
                upstream=("train",),
                doc="Score candidate and champion on the same holdout; write the decision record.",
            ),
            Step(
                "gate",
                "gate",
                upstream=("evaluate",),
                retries=0,
                doc="Fail here when the candidate does not beat the gate; the champion is kept.",
                alert="gate",
            ),
            *approval,
            *refit,
            _promote_step((*approval, *refit)),
            _deploy_step(loaded),
        ),
    )


def _with_defaults(dag: DagPlan) -> DagPlan:
    """Give every step the generic failure alert (unless it has its own) and its time limit."""
    steps = []
    for step in dag.steps:
        alert = step.alert or (None if step.kind in SILENT_STEPS else FAILURE_ALERT)
        timeout = step.timeout_minutes or TIMEOUT_MINUTES.get(step.kind)
        steps.append(dataclasses.replace(step, alert=alert, timeout_minutes=timeout))
    return dataclasses.replace(dag, steps=tuple(steps))


def _deploy_step(loaded: LoadedSpec) -> Step:
    """The train DAG's ``deploy`` task, as the spec's deploy target asks for it (its kind, config and limits).

    Raises:
        PlanError: The target asks for a step kind no installed package declares, whose package
            fails to load, or with a config its kind refuses (placed at ``deployment.target``).
    """
    deployment = loaded.spec.deployment
    asked = deployment.target_spec.deploy_step(loaded.spec.pipeline, deployment.settings)
    try:
        # A kind's config is typed by the kind (sluice's own or another package's);
        # ``deploy`` calls the run-time target's deploy() and takes none.
        step = Step(
            "deploy",
            asked.kind,
            upstream=("promote",),
            doc=asked.doc,
            config=make_config(asked.kind, asked.config),
            alert="deploy",
            timeout_minutes=asked.timeout_minutes,
        )
    except (PlanError, PluginError) as exc:
        # A package whose step kinds fail to load refuses only the pipelines whose target asks
        # for one of them, at that spec's line: the other pipelines still build.
        raise PlanError(
            f"deploy target '{deployment.target}' asks for a deploy step that cannot be built: {exc}",
            where="deployment.target",
            hint=getattr(exc, "hint", "") or f"fix the package that declares the target '{deployment.target}'",
        ) from None
    return step if asked.retries is None else dataclasses.replace(step, retries=asked.retries)


def _monitor_dag(loaded: LoadedSpec, tags: tuple[str, ...]) -> DagPlan:
    name = loaded.spec.pipeline
    drift = loaded.spec.monitoring.drift
    return DagPlan(
        dag_id=f"{name}__monitor",
        role="monitor",
        schedule=Schedule(assets=(batches_asset(name),)),
        tags=(*tags, "monitor"),
        description=f"{name}: drift of each new batch against the champion's training data (Evidently)",
        steps=(
            Step(
                "compute_drift",
                "compute_drift",
                doc="Evidently drift report of the new batches vs the champion's reference data.",
            ),
            Step(
                "publish_drift",
                "publish_drift",
                upstream=("compute_drift",),
                outlets=(drift_asset(name),),
                doc=f"Announce drift (asset event with the numbers); skipped when share < {drift.drift_share}.",
            ),
            Step(
                "alert_drift",
                "alert_drift",
                upstream=("compute_drift",),
                doc=(
                    "Email the drift alert (numbers, report) when the batch drifted; skipped otherwise. "
                    "Drift keeps the run green; an email that cannot be sent fails this task."
                ),
            ),
        ),
    )


def _serving_dag(loaded: LoadedSpec, tags: tuple[str, ...], watch: Watch) -> DagPlan:
    """``<pipeline>__serving``: the target's scheduled look at its model server (the local target's, say)."""
    name = loaded.spec.pipeline
    return DagPlan(
        dag_id=f"{name}__serving",
        role="serving",
        schedule=Schedule(cron=watch.cron),
        tags=(*tags, "serving"),
        description=f"{name}: {watch.description}",
        steps=(
            Step(
                "watch_serving",
                "watch_serving",
                # The next scheduled look is the retry.
                retries=0,
                doc="Fail (and alert) when the model server was down, answered wrong or shared its port; "
                "the recorded version is restarted first.",
                timeout_minutes=watch.timeout_minutes,
            ),
        ),
    )
