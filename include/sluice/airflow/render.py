"""Render a plan into Airflow DAGs: one renderer per step kind, registered by name.

sluice's own kinds register here with :func:`renderer`; another package's kind names its
renderer in its :class:`sluice.plan.model.StepKind` (``module:function``), imported by
:func:`renderer_of` when a DAG with such a step is rendered.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from airflow.sdk import DAG, Asset, BaseOperator

from sluice.plan.model import (
    ApprovalConfig,
    DagPlan,
    PipelinePlan,
    PodDeployConfig,
    S3Landing,
    Schedule,
    Step,
    WatchConfig,
    plugin_step_kinds,
)
from sluice.spec.plugins import STEP_KINDS_GROUP, PluginError, distribution

Renderer = Callable[[Step, PipelinePlan], BaseOperator]
RENDERERS: dict[str, Renderer] = {}
START_DATE = datetime(2024, 1, 1)
#: Airflow connection alert emails go through (``airflow_settings.yaml`` defines it locally).
SMTP_CONN_ID = "smtp_default"
C = TypeVar("C")


def renderer(*kinds: str) -> Callable[[Renderer], Renderer]:
    """Register a function as the renderer of step ``kinds``."""

    def register(fn: Renderer) -> Renderer:
        for kind in kinds:
            RENDERERS[kind] = fn
        return fn

    return register


@functools.lru_cache(maxsize=4096)
def _asset(uri: str) -> Asset:
    """One Asset per URI, shared by the DAGs that produce and consume it, as a hand-written DAG file would.

    Building an Asset normalises its URI through the providers' handlers, which is most
    of what a DAG file pays for it.
    """
    return Asset(uri)


def operator_kwargs(step: Step, plan: PipelinePlan) -> dict[str, Any]:
    """The operator arguments every sluice task gets, for a renderer to pass on (``**operator_kwargs(...)``).

    Task id, retries, documentation, outlets, pool, time limit and the alert callbacks the
    plan asks for; another package's renderer passes them so its task behaves as sluice's do.
    """
    kwargs: dict[str, Any] = {
        "task_id": step.task_id,
        "retries": step.retries,
        "retry_delay": timedelta(seconds=20),
        "doc_md": step.doc,
        "outlets": [_asset(uri) for uri in step.outlets],
    }
    if step.pool:
        kwargs["pool"] = step.pool
    if step.timeout_minutes:
        kwargs["execution_timeout"] = timedelta(minutes=step.timeout_minutes)
    if step.alert and plan.alert_emails:
        # Task-level on purpose: a DAG-level notifier breaks under dag.test() (apache/airflow#64649).
        from sluice.airflow.notifications.alerts import AlertNotifier

        kwargs["on_failure_callback"] = AlertNotifier(
            alert=step.alert,
            pipeline=plan.pipeline,
            to=list(plan.alert_emails),
            spec_path=plan.spec_path,
            smtp_conn_id=SMTP_CONN_ID,
        )
    if step.kind == "land" and plan.alert_emails:
        # land succeeds when it refuses an input or finds an archived file changed after
        # landing: the news goes out on success (each such input is in one run's result only).
        from sluice.airflow.notifications.alerts import AlertNotifier

        kwargs["on_success_callback"] = AlertNotifier(
            alert="landing",
            pipeline=plan.pipeline,
            to=list(plan.alert_emails),
            spec_path=plan.spec_path,
            smtp_conn_id=SMTP_CONN_ID,
        )
    return kwargs


@renderer("wait_for_files")
def _wait_for_files(step: Step, plan: PipelinePlan) -> BaseOperator:
    # Both sensors defer: the wait runs as a trigger in the triggerer, holding no worker slot.
    config = _config(step, WatchConfig)
    waiting: dict[str, Any] = {
        "deferrable": True,
        "poke_interval": config.poll_seconds,
        "timeout": config.timeout_seconds,
        "soft_fail": True,
    }
    landing = config.landing
    if isinstance(landing, S3Landing):
        from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor

        from sluice.services.landing import key_regex

        # A regex, not wildcard_match: fnmatch's '*' crosses '/', so 'prefix/*.parquet'
        # would match the archived 'prefix/_processed/x.parquet' and wake forever.
        return S3KeySensor(
            bucket_name=landing.bucket,
            bucket_key=key_regex(landing.prefix, landing.pattern),
            use_regex=True,
            aws_conn_id=landing.conn_id,
            **waiting,
            **operator_kwargs(step, plan),
        )
    from sluice.airflow.sensors.inbox import InboxFileSensor

    folder, _, pattern = landing.glob.rpartition("/")
    return InboxFileSensor(
        folder=folder,
        pattern=pattern,
        marker=config.marker,
        spec_path=plan.spec_path if config.check_stranded else None,
        settle_seconds=config.settle_seconds,
        csv=config.csv,
        **waiting,
        **operator_kwargs(step, plan),
    )


@renderer(
    "land",
    "validate",
    "publish",
    "confirm_published",
    "check_batches",
    "check_trigger",
    "build_features",
    "train",
    "evaluate",
    "gate",
    "refit",
    "promote",
    "deploy",
    "compute_drift",
    "publish_drift",
    "alert_drift",
    "watch_serving",
)
def _python_step(step: Step, plan: PipelinePlan) -> BaseOperator:
    from airflow.providers.standard.operators.python import PythonOperator

    op_kwargs: dict[str, Any] = {"spec_path": plan.spec_path}
    if step.kind == "land":
        op_kwargs["landing"] = _landing(plan)
    if step.kind in ("publish", "publish_drift"):
        op_kwargs["asset_uri"] = step.outlets[0]
    if step.kind == "alert_drift":
        op_kwargs |= {"to": list(plan.alert_emails), "smtp_conn_id": SMTP_CONN_ID}
    return PythonOperator(python_callable=task_callable(step.kind), op_kwargs=op_kwargs, **operator_kwargs(step, plan))


def task_callable(kind: str) -> Callable[..., Any]:
    """``sluice.airflow.tasks.<kind>``, imported when the task runs rather than when the DAG file is parsed.

    The task callables bring the step records, storage and landing code with them: about
    30 ms of imports on every parse of the DAG file, for functions only a task process calls.
    Every callable takes ``**context``, so Airflow passes this one the whole context too.
    """

    def run(**context: Any) -> Any:
        from sluice.airflow import tasks

        return getattr(tasks, kind)(**context)

    run.__name__ = run.__qualname__ = kind
    run.__module__ = "sluice.airflow.tasks"
    return run


@renderer("approve")
def _approve(step: Step, plan: PipelinePlan) -> BaseOperator:
    """Human-in-the-loop approval: Approve lets promote run; Reject skips promote and deploy."""
    from sluice.airflow.operators.approval import EvidenceApprovalOperator

    return EvidenceApprovalOperator(
        pipeline=plan.pipeline,
        # No defaults: a timeout fails the task (red in the UI) instead of choosing silently.
        response_timeout=timedelta(hours=_config(step, ApprovalConfig).timeout_hours),
        **operator_kwargs(step, plan),
    )


@renderer("deploy_kubernetes")
def _deploy_kubernetes(step: Step, plan: PipelinePlan) -> BaseOperator:
    # The pod operator itself is built when the task runs: importing it here would load the
    # kubernetes client at every parse of the DAG file (see sluice.airflow.operators.kubernetes).
    from sluice.airflow.operators.kubernetes import DeployPodOperator

    config = _config(step, PodDeployConfig)
    return DeployPodOperator(
        pipeline=config.pipeline,
        settings=config.settings,
        # The promotion is read as its record when the task runs, not templated out of a dict.
        version_from=config.version_from,
        airflow_run_id="{{ run_id }}",
        spec_path=plan.spec_path,
        **operator_kwargs(step, plan),
    )


def renderer_of(kind: str) -> Renderer:
    """The renderer of step ``kind``: sluice's own, or the one another package's :class:`StepKind` names.

    Raises:
        PluginError: The package's renderer cannot be imported or is no function (the
            message names the package, the entry point and the cause).
        KeyError: No kind of that name (a built plan has none: :class:`Step` checks it).
    """
    if kind in RENDERERS:
        return RENDERERS[kind]
    return _plugin_renderer(kind)


def _plugin_renderer(kind: str) -> Renderer:
    where = plugin_step_kinds()[kind].renderer
    dist = distribution(STEP_KINDS_GROUP, kind)
    module, _, attr = where.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except Exception as exc:
        raise PluginError(
            f"{STEP_KINDS_GROUP} '{kind}' of distribution {dist}: its renderer '{where}' failed to import: "
            f"{type(exc).__name__}: {exc}; fix or uninstall {dist.split()[0]}"
        ) from exc
    if not callable(fn):
        raise PluginError(
            f"{STEP_KINDS_GROUP} '{kind}' of distribution {dist}: its renderer '{where}' is {fn!r}, not a function"
        )
    return cast(Renderer, fn)


def _landing(plan: PipelinePlan) -> dict[str, Any]:
    """The landing zone's fields, for the ``land`` task (``plan.model.landing_from`` reads them back)."""
    for dag in plan.dags:
        for step in dag.steps:
            if isinstance(step.config, WatchConfig):
                return asdict(step.config.landing)
    raise ValueError(f"plan of {plan.pipeline} has no wait_for_files step")


def _config(step: Step, kind: type[C]) -> C:
    """``step.config`` as the ``kind`` its step kind is built with (``Step`` checks it)."""
    assert isinstance(step.config, kind)
    return step.config


def render_schedule(schedule: Schedule) -> Any:
    """Airflow ``schedule`` for a plan's schedule (cron, assets, both, or None).

    Several assets mean *any* of them (``Asset | Asset``; a plain list would wait for all).
    Events that arrive while a run is queued or running are collapsed by Airflow into one
    next run (one queue row per asset; the DAG has ``max_active_runs=1``).
    """
    assets = [_asset(uri) for uri in schedule.assets]
    condition: Any = None
    for asset in assets:
        condition = asset if condition is None else condition | asset
    if schedule.cron and condition is not None:
        from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

        return AssetOrTimeSchedule(timetable=CronTriggerTimetable(schedule.cron, timezone="UTC"), assets=condition)
    if condition is not None:
        return condition
    return schedule.cron


def _killed_task_watch(plan: PipelinePlan) -> Any:
    """The run-level watch that alerts for a task killed on its last try (None without recipients).

    A killed task process runs no ``on_failure_callback`` of its own; see
    :class:`sluice.airflow.notifications.alerts.KilledTaskWatch`.
    """
    if not plan.alert_emails:
        return None
    from sluice.airflow.notifications.alerts import KilledTaskWatch

    return KilledTaskWatch(
        pipeline=plan.pipeline, to=list(plan.alert_emails), spec_path=plan.spec_path, smtp_conn_id=SMTP_CONN_ID
    )


def render_dag(plan: PipelinePlan, dag_plan: DagPlan) -> DAG:
    """Build one Airflow DAG from a DAG plan."""
    dag = DAG(
        dag_id=dag_plan.dag_id,
        description=dag_plan.description,
        schedule=render_schedule(dag_plan.schedule),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=dag_plan.max_active_runs,
        tags=list(dag_plan.tags),
        doc_md=f"Built by sluice from `{plan.spec_path}`.\n\n{dag_plan.description}",
        default_args={"owner": plan.owner},
        # Only what the loader returns is registered: a `with dag:` block would otherwise
        # register a half-built DAG even when its pipeline failed to compile.
        auto_register=False,
        on_failure_callback=_killed_task_watch(plan),
    )
    from sluice.airflow.links import links_for

    with dag:
        ops = {step.task_id: renderer_of(step.kind)(step, plan) for step in dag_plan.steps}
    for task_id, op in ops.items():
        extra = links_for(task_id, plan.spec_path)
        if extra:
            # Computed by the worker when the task ends and shown as buttons on the task.
            op.operator_extra_links = [*op.operator_extra_links, *extra]
    for step in dag_plan.steps:
        for upstream in step.upstream:
            ops[upstream] >> ops[step.task_id]
    return dag


def render_pipeline(plan: PipelinePlan) -> list[DAG]:
    """Every DAG of one pipeline."""
    return [render_dag(plan, d) for d in plan.dags]
