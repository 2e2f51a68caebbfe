"""The ``features`` section: the PySpark feature job, its inputs, where it runs and its configuration."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from sluice.spec.base import StrictModel, rule
from sluice.spec.models.rules import OBJECT_STORAGE_ISSUE
from sluice.spec.spark_conf import as_text, conf_problem


class SparkInput(StrictModel):
    """An extra table the feature job reads (reference data)."""

    uri: str = Field(description="File or folder; relative paths resolve against the project root.")
    format: Literal["parquet", "csv"] = Field("parquet", description="File format.")

    @field_validator("uri")
    @classmethod
    def _local_path(cls, value: str) -> str:
        if not value.strip():
            raise rule("uri is empty", "name a file or folder, e.g. data/reference/weather.parquet")
        scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", value)
        if scheme:
            # It would be joined onto the project root as a local folder named '<scheme>:'.
            raise rule(
                f"uri '{value}': {scheme.group(1)}:// inputs are not supported yet ({OBJECT_STORAGE_ISSUE})",
                "copy the table into the project (e.g. data/reference/) and name that path",
            )
        return value


#: A Spark setting in the JSON Schema: text, or a number or boolean (passed as Spark writes it).
SPARK_VALUE_SCHEMA: dict[str, Any] = {"type": ["string", "number", "boolean"]}


class Features(StrictModel):
    """The PySpark feature job."""

    job: str = Field(
        pattern=r"^[^:]+\.py:[A-Za-z_][A-Za-z0-9_]*$",
        description="'path/to/file.py:function'; the function takes (spark, inputs) and returns a DataFrame.",
    )
    inputs: dict[str, SparkInput] = Field(
        default_factory=dict,
        description="Extra tables passed to the job by name, beside 'batches' (the validated rows).",
    )
    engine: Literal["local", "cluster", "duckdb"] = Field(
        "local",
        description=(
            "'local': Spark local[*] in the task; 'cluster': the Spark master below; 'duckdb': the same job, "
            "unchanged, on sqlframe over in-process DuckDB in a child process of the task (no JVM; conf is not "
            "used; sluice lint refuses a job it cannot run)."
        ),
    )
    master: str | None = Field(None, description="Spark master URL when engine is 'cluster'.")
    conf: dict[str, Annotated[str, BeforeValidator(as_text), WithJsonSchema(SPARK_VALUE_SCHEMA)]] = Field(
        default_factory=dict,
        description=(
            "Extra Spark settings (e.g. spark.sql.shuffle.partitions: 8); numbers and true/false are passed as "
            "Spark writes them. Well-known settings are checked as Spark parses them: sizes (512m, 2g), "
            "durations (120s), whole numbers, booleans."
        ),
    )
    scope: Literal["batch", "history"] = Field(
        "batch",
        description=(
            "'batch': the job runs on each batch alone and its output per batch is cached (a train run computes "
            "only batches not seen before; right for row-wise work such as filters and joins with reference "
            "tables); 'history': the job needs all the batches at once (aggregates or windows across batches) "
            "and runs over every batch trained on, at each train run."
        ),
    )

    @field_validator("conf")
    @classmethod
    def _spark_parses(cls, value: dict[str, str]) -> dict[str, str]:
        for key, setting in value.items():
            problem = conf_problem(key, setting)
            if problem:
                raise rule(*problem, key)
        return value

    @field_validator("inputs")
    @classmethod
    def _no_reserved_input(cls, value: dict[str, SparkInput]) -> dict[str, SparkInput]:
        if "batches" in value:
            raise rule(
                "'batches' is reserved: it is always the validated batch rows", "name the input differently", "batches"
            )
        return value

    @model_validator(mode="after")
    def _master_for_cluster(self) -> Features:
        if self.engine == "cluster" and not self.master:
            raise rule("engine 'cluster' needs master", "add master: spark://host:7077, or use engine: local", "engine")
        return self
