"""Render a plan into Airflow DAGs: one renderer per step kind, registered by name."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, BaseOperator

from sluice.airflow import tasks
from sluice.plan.model import DagPlan, PipelinePlan, Schedule, Step

Renderer = Callable[[Step, PipelinePlan], BaseOperator]
RENDERERS: dict[str, Renderer] = {}
START_DATE = datetime(2024, 1, 1)


def renderer(*kinds: str) -> Callable[[Renderer], Renderer]:
    """Register a function as the renderer of step ``kinds``."""

    def register(fn: Renderer) -> Renderer:
        for kind in kinds:
            RENDERERS[kind] = fn
        return fn

    return register


def _common(step: Step) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "task_id": step.task_id,
        "retries": step.retries,
        "retry_delay": timedelta(seconds=20),
        "doc_md": step.doc,
        "outlets": [Asset(uri) for uri in step.outlets],
    }
    if step.pool:
        kwargs["pool"] = step.pool
    return kwargs


@renderer("wait_for_files")
def _wait_for_files(step: Step, plan: PipelinePlan) -> BaseOperator:
    # Both sensors defer: the wait runs as a trigger in the triggerer, holding no worker slot.
    config = step.config
    waiting = {
        "deferrable": True,
        "poke_interval": config["poll_seconds"],
        "timeout": config["timeout_seconds"],
        "soft_fail": True,
    }
    if config["source"] == "s3":
        from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor

        from sluice.services.landing import key_regex

        # A regex, not wildcard_match: fnmatch's '*' crosses '/', so 'prefix/*.parquet'
        # would match the archived 'prefix/_processed/x.parquet' and wake forever.
        return S3KeySensor(
            bucket_name=config["bucket"],
            bucket_key=key_regex(config["prefix"], config["pattern"]),
            use_regex=True,
            aws_conn_id=config["conn_id"],
            **waiting,
            **_common(step),
        )
    from airflow.providers.standard.sensors.filesystem import FileSensor

    return FileSensor(filepath=config["glob"], fs_conn_id="fs_default", **waiting, **_common(step))


@renderer(
    "land", "validate", "publish", "check_batches", "build_features", "train", "evaluate", "gate", "promote", "deploy"
)
def _python_step(step: Step, plan: PipelinePlan) -> BaseOperator:
    from airflow.providers.standard.operators.python import PythonOperator

    op_kwargs: dict[str, Any] = {"spec_path": plan.spec_path}
    if step.kind == "land":
        op_kwargs["landing"] = _landing(plan)
    if step.kind == "publish":
        op_kwargs["asset_uri"] = step.outlets[0]
    return PythonOperator(python_callable=getattr(tasks, step.kind), op_kwargs=op_kwargs, **_common(step))


def _landing(plan: PipelinePlan) -> dict[str, Any]:
    for dag in plan.dags:
        for step in dag.steps:
            if step.kind == "wait_for_files":
                keys = ("source", "glob", "bucket", "prefix", "pattern", "conn_id")
                return {k: step.config[k] for k in keys if k in step.config}
    raise ValueError(f"plan of {plan.pipeline} has no wait_for_files step")


def render_schedule(schedule: Schedule) -> Any:
    """Airflow ``schedule`` for a plan's schedule (cron, assets, both, or None)."""
    assets = [Asset(uri) for uri in schedule.assets]
    if schedule.cron and assets:
        from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

        return AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(schedule.cron, timezone="UTC"),
            assets=assets[0] if len(assets) == 1 else assets,
        )  # type: ignore[arg-type]
    if assets:
        return assets
    return schedule.cron


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
        default_args={"owner": "sluice"},
    )
    with dag:
        ops = {step.task_id: RENDERERS[step.kind](step, plan) for step in dag_plan.steps}
    for step in dag_plan.steps:
        for upstream in step.upstream:
            ops[upstream] >> ops[step.task_id]
    return dag


def render_pipeline(plan: PipelinePlan) -> list[DAG]:
    """Every DAG of one pipeline."""
    return [render_dag(plan, d) for d in plan.dags]
