"""Compile a loaded spec into a plan."""

from __future__ import annotations

from sluice.plan.model import DagPlan, PipelinePlan, Schedule, Step
from sluice.spec.loader import LoadedSpec

SPARK_POOL = "sluice_spark"


def batches_asset(pipeline: str) -> str:
    """URI of the asset announcing new validated batches of a pipeline."""
    return f"sluice://{pipeline}/batches"


def landing_config(loaded: LoadedSpec) -> dict[str, str]:
    """Where the ingest DAG looks for new files, as plain settings for the renderer.

    A local folder gives ``{"source": "local", "glob": "/abs/folder/<pattern>"}``; an S3
    prefix gives ``{"source": "s3", "bucket", "prefix", "pattern", "conn_id"}``.
    """
    source = loaded.spec.source
    if source.is_s3:
        bucket, prefix = source.s3_location()
        return {
            "source": "s3",
            "bucket": bucket,
            "prefix": prefix,
            "pattern": source.pattern,
            "conn_id": source.aws_conn_id,
        }
    return {"source": "local", "glob": f"{loaded.resolve(source.uri)}/{source.pattern}"}


def build_plan(loaded: LoadedSpec) -> PipelinePlan:
    """Compile a spec into its DAGs (``<pipeline>__ingest``, ``<pipeline>__train``).

    Args:
        loaded: A validated spec.

    Returns:
        The plan, ready for the Airflow renderer or ``sluice plan``.
    """
    spec = loaded.spec
    name = spec.pipeline
    tags = ("sluice", f"pipeline:{name}", *spec.tags)
    detect = spec.source.detect

    ingest = DagPlan(
        dag_id=f"{name}__ingest",
        role="ingest",
        schedule=Schedule(cron=detect.schedule),
        tags=(*tags, "ingest"),
        description=f"{name}: land new files from {spec.source.uri}, validate, publish",
        steps=(
            Step(
                "wait_for_files",
                "wait_for_files",
                doc="Deferred wait (no worker slot) until a batch file lands.",
                config={
                    **landing_config(loaded),
                    "poll_seconds": detect.poll_seconds,
                    "timeout_seconds": detect.timeout_seconds,
                },
            ),
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
                "check_batches",
                "check_batches",
                upstream=("validate",),
                retries=0,
                doc="Fail the run, with the report path, if a batch was rejected.",
                alert="validation",
            ),
        ),
    )

    assets = (batches_asset(name),) if "new_data" in spec.retrain_on else ()
    cron = spec.retrain_schedule if "schedule" in spec.retrain_on else None
    train = DagPlan(
        dag_id=f"{name}__train",
        role="train",
        schedule=Schedule(cron=cron, assets=assets),
        tags=(*tags, "train"),
        description=f"{name}: features, train, gate against the champion, promote, deploy",
        steps=(
            Step(
                "build_features",
                "build_features",
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
            Step("promote", "promote", upstream=("gate",), doc="Register the candidate and move the champion alias."),
            Step(
                "deploy",
                "deploy",
                upstream=("promote",),
                doc=f"Serve the champion ({spec.deployment.target}).",
                alert="deploy",
            ),
        ),
    )
    return PipelinePlan(pipeline=name, spec_path=str(loaded.path), dags=(ingest, train))
