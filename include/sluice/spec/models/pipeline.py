"""The whole spec (:class:`PipelineSpec`), with ``alerts`` and ``storage``."""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from sluice.spec.base import StrictModel, rule
from sluice.spec.models.deployment import Deployment
from sluice.spec.models.evaluation import CLASSIFICATION_METRICS, REGRESSION_METRICS, Evaluation
from sluice.spec.models.features import Features
from sluice.spec.models.monitoring import Monitoring
from sluice.spec.models.rules import (
    IDENTIFIER,
    S3Reachable,
    _did_you_mean,
    check_cron,
    s3_location_problem,
)
from sluice.spec.models.source import Source, Validation
from sluice.spec.models.training import SPARK_MODELS, Training


class Alerts(StrictModel):
    """Who hears about failures."""

    email: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(
        default_factory=list, description="Recipients of alert emails."
    )


class Storage(S3Reachable, StrictModel):
    """Where sluice keeps batches, features and run files."""

    root: str = Field(
        "data/sluice",
        description=(
            "Local folder (relative paths resolve against the project root and must stay inside it), "
            "or 's3://bucket/prefix': an S3 or S3-compatible bucket, reached through the Airflow "
            "connection conn_id by every task, the reports page, the CLI and Spark (S3A)."
        ),
    )
    conn_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Airflow connection (type aws) for an s3:// root: keys, endpoint, region; default 'aws_default'.",
    )

    @property
    def location(self) -> str:
        """The storage root (``root``)."""
        return self.root

    @field_validator("root")
    @classmethod
    def _folder_or_bucket(cls, value: str) -> str:
        if not value.strip():
            raise rule("storage.root is empty", "name a folder, e.g. data/sluice (the default)")
        scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", value)
        if scheme and scheme.group(1) != "s3":
            raise rule(
                f"storage.root '{value}': {scheme.group(1)}:// storage is not supported",
                "use a local folder such as data/sluice, or an S3 bucket: s3://bucket/prefix",
            )
        if scheme:
            if problem := s3_location_problem(value):
                raise rule(f"storage.root {problem[0]}", problem[1])
            return value
        if not value.startswith("/"):
            normal = posixpath.normpath(value)
            if normal == ".." or normal.startswith("../"):
                raise rule(
                    f"storage.root '{value}' leaves the project folder",
                    "use a folder inside the project (e.g. data/sluice) or an absolute path",
                )
        return value

    @model_validator(mode="after")
    def _conn_id_needs_a_bucket(self) -> Storage:
        if self.conn_id is not None and not self.is_s3:
            raise rule(
                "storage.conn_id applies only to an s3:// root",
                "remove conn_id, or set root to s3://bucket/prefix",
                "conn_id",
            )
        return self


class PipelineSpec(StrictModel):
    """A whole pipeline: the root of a ``*.pipeline.yaml`` file."""

    pipeline: str = Field(pattern=IDENTIFIER, description="Name; prefixes DAG ids and names the registered model.")
    description: str = Field("", description="Shown on the DAGs in the Airflow UI.")
    owner: str = Field("sluice", description="Team that owns the pipeline.")
    tags: list[str] = Field(default_factory=list, description="Extra Airflow tags on every DAG of the pipeline.")
    alerts: Alerts = Field(default_factory=Alerts, description="Who is told about failures.")
    storage: Storage = Field(default_factory=Storage, description="Where batches and features live.")  # type: ignore[arg-type]
    source: Source = Field(description="The landing zone new batches arrive in.")
    validation: Validation = Field(default_factory=Validation, description="Checks on every batch.")  # type: ignore[arg-type]
    features: Features = Field(description="The PySpark feature job.")
    training: Training = Field(description="What is learnt, from which columns.")
    evaluation: Evaluation = Field(description="The metric and the promotion gate.")
    deployment: Deployment = Field(default_factory=Deployment, description="Where the champion is served.")  # type: ignore[arg-type]
    monitoring: Monitoring = Field(
        default_factory=Monitoring,  # type: ignore[arg-type]
        description="Drift monitoring of new batches against the champion's training data.",
    )
    retrain_on: list[Literal["new_data", "drift", "schedule"]] = Field(
        default=["new_data"],
        description=(
            "What starts <pipeline>__train besides 'airflow dags trigger': new_data (asset "
            "sluice://<pipeline>/batches), drift (asset sluice://<pipeline>/drift), schedule "
            "(retrain_schedule); several mean any of them. The first model: new_data trains it on the "
            "first accepted batch; with drift only it is trained by hand (no champion, no drift event). "
            "Asset events that reach a paused DAG are dropped: unpause <pipeline>__train first."
        ),
    )
    retrain_schedule: str | None = Field(None, description="Cron used when retrain_on has 'schedule'.")
    retrain_cooldown_minutes: int = Field(
        0,
        ge=0,
        le=366 * 24 * 60,
        description=(
            "An automatic retrain within this many minutes of the last one is skipped "
            "(logged); manual triggers are not held back."
        ),
    )

    @field_validator("retrain_on")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise rule(f"retrain_on lists {repeated} more than once", "list each trigger once")
        return value

    @field_validator("retrain_schedule")
    @classmethod
    def _retrain_schedule_is_cron(cls, value: str | None) -> str | None:
        return check_cron(value, "retrain_schedule")

    @model_validator(mode="after")
    def _pattern_fits_format(self) -> PipelineSpec:
        pattern, fmt = self.source.pattern, self.source.format
        if not pattern.strip() or not pattern.strip("*?[]!."):
            raise rule(
                f"source.pattern '{pattern}' matches every file (temporary and partial ones too)",
                f"match the batch files only, e.g. '*.{fmt}'",
                "source.pattern",
            )
        if not pattern.lower().endswith(f".{fmt}"):
            raise rule(
                f"source.pattern '{pattern}' does not end in '.{fmt}' but source.format is '{fmt}'",
                f"end the pattern with '.{fmt}' or set source.format to the files' format",
                "source.pattern",
            )
        return self

    @model_validator(mode="after")
    def _columns_in_declared_schema(self) -> PipelineSpec:
        # Only columns that must exist in the raw batch are checked: checks and drift read the
        # batch as it lands. target, split.by, features and drop name the feature job's output,
        # which is only known once the job has run.
        declared = self.source.columns
        if declared is None:
            if self.source.id_column is not None:
                raise rule(
                    "source.id_column needs source.columns: the id must be a declared column",
                    "declare the schema (sluice infer-schema SAMPLE --spec SPEC --write) or remove id_column",
                    "source.id_column",
                )
            return self
        hint = f"declared in source.columns: {', '.join(declared) or 'none'}"
        if self.source.id_column is not None and self.source.id_column not in declared:
            raise rule(
                f"source.id_column '{self.source.id_column}' is not in source.columns",
                _did_you_mean(self.source.id_column, list(declared)) or hint,
                "source.id_column",
            )
        for i, check in enumerate(self.validation.expectations):
            column = getattr(check, "column", None)
            if column is not None and column not in declared:
                raise rule(
                    f"column '{column}' is not in source.columns",
                    _did_you_mean(column, list(declared)) or hint,
                    f"validation.expectations.{i}.column",
                )
        drift = self.monitoring.drift
        for column in [*(drift.columns or []), *drift.methods]:
            if column not in declared:
                where = "columns" if column in (drift.columns or []) else f"methods.{column}"
                raise rule(
                    f"column '{column}' is not in source.columns",
                    _did_you_mean(column, list(declared)) or hint,
                    f"monitoring.drift.{where}",
                )
        return self

    @model_validator(mode="after")
    def _spark_model_fits_metric(self) -> PipelineSpec:
        kind = SPARK_MODELS.get(self.training.model) if self.training.engine == "spark" else None
        metric = self.evaluation.metric
        wrong = (kind == "classifier" and metric in REGRESSION_METRICS) or (
            kind == "regressor" and metric in CLASSIFICATION_METRICS
        )
        if kind is not None and wrong:
            other = "SparkXGBRegressor" if kind == "classifier" else "SparkXGBClassifier"
            raise rule(
                f"metric '{metric}' does not score a {kind} ({self.training.model})",
                f"use model: xgboost.spark.{other}, or a {kind}'s metric",
                "training.model",
            )
        return self

    @model_validator(mode="after")
    def _schedule_needs_cron(self) -> PipelineSpec:
        if "drift" in self.retrain_on and not self.monitoring.enabled:
            raise rule(
                "retrain_on has 'drift' but monitoring.enabled is false: nothing would detect drift",
                "enable monitoring or retrain on new_data or a schedule",
                "retrain_on",
            )
        if "schedule" in self.retrain_on and not self.retrain_schedule:
            raise rule(
                "retrain_on has 'schedule' but there is no retrain_schedule",
                "set retrain_schedule to a cron, e.g. '0 3 * * *'",
                "retrain_on",
            )
        if self.retrain_schedule and "schedule" not in self.retrain_on:
            raise rule(
                "retrain_schedule is set but retrain_on lacks 'schedule'",
                "add schedule to retrain_on, or remove retrain_schedule",
                "retrain_schedule",
            )
        return self
