"""The ``source`` section (where batches land, how they are detected) and ``validation``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from sluice.spec.base import StrictModel, rule
from sluice.spec.expectations import Expectation
from sluice.spec.models.rules import S3Reachable, check_cron, s3_location_problem


class Detect(StrictModel):
    """How the ingest DAG notices new files."""

    poll_seconds: int = Field(30, ge=1, le=3600, description="How often the deferred sensor looks.")
    timeout_seconds: int = Field(
        3600,
        ge=10,
        le=7 * 24 * 3600,
        description=(
            "A wait longer than this ends the ingest run as skipped; the next run waits again (at most a week)."
        ),
    )
    schedule: str = Field(
        "@continuous",
        description="Ingest DAG schedule: '@continuous' (always one run waiting for files) or a cron.",
    )
    settle_seconds: float = Field(
        3,
        ge=0,
        le=600,
        description=(
            "A local file is landed only if its size and mtime are the same in two looks this many seconds "
            "apart (0: one look). S3 objects are whole once visible and need no settle time."
        ),
    )
    marker: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description=(
            "Completion marker. With '{name}' or '{stem}' (e.g. '{name}.done'): a file is landed only once its "
            "marker exists; the marker is removed when the file is archived. Without (e.g. '_SUCCESS'): one "
            "marker for the folder; files modified before the marker's mtime are landed, later ones wait."
        ),
    )

    @field_validator("marker")
    @classmethod
    def _marker_is_a_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "/" in value:
            raise ValueError("marker must be a file name in the landing folder, without '/'")
        try:
            sample = value.format(name="x.parquet", stem="x")
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                f"marker '{value}': the only placeholders are {{name}} and {{stem}} (e.g. '{{name}}.done')"
            ) from None
        if sample in ("x.parquet", "x"):
            raise ValueError(f"marker '{value}' names the file itself: add a suffix, e.g. '{{name}}.done'")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule_is_cron(cls, value: str) -> str:
        return str(check_cron(value, "schedule", also=("@continuous", "@once")))

    @model_validator(mode="after")
    def _poll_within_timeout(self) -> Detect:
        if self.poll_seconds > self.timeout_seconds:
            raise rule(
                f"poll_seconds ({self.poll_seconds}) is longer than timeout_seconds ({self.timeout_seconds})",
                "poll more often than the wait times out",
                "poll_seconds",
            )
        return self


#: Column types a source schema may declare (``sluice infer-schema`` writes them).
ColumnType = Literal["string", "int", "float", "bool", "timestamp", "date"]


class Source(S3Reachable, StrictModel):
    """Where new batches land."""

    uri: str = Field(
        description=(
            "Landing folder: a local path (relative paths resolve against the project root) or "
            "'s3://bucket/prefix' (an S3 or S3-compatible bucket, read through the Airflow connection conn_id)."
        )
    )
    pattern: str = Field(
        "*.parquet",
        description="Glob of batch files directly in the landing folder (sub-folders like '_processed/' never match).",
    )
    format: Literal["parquet", "csv"] = Field("parquet", description="File format of a batch.")
    conn_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Airflow connection (type aws) used for an s3:// uri; default 'aws_default'.",
    )
    detect: Detect = Field(default_factory=Detect, description="How new files are noticed.")  # type: ignore[arg-type]
    columns: dict[str, ColumnType] | None = Field(
        None,
        description=(
            "Declared schema of a batch: column name -> type (string, int, float, bool, timestamp, date). "
            "Every batch is checked against it; 'sluice infer-schema FILE' writes it from a sample file. "
            "Without it, the first accepted batch's columns are pinned and later batches are held to them "
            "('sluice schema-pin' shows or changes the pin)."
        ),
    )
    id_column: str | None = Field(
        None,
        min_length=1,
        description=(
            "Column that identifies a row (a flight, a customer, ...); must be in source.columns. The model "
            "server logs its value with each prediction, so predictions can be joined with labels later."
        ),
    )

    @property
    def location(self) -> str:
        """The landing folder (``uri``)."""
        return self.uri

    @model_validator(mode="after")
    def _pattern_matches_format(self) -> Source:
        if "/" in self.pattern:
            raise ValueError("pattern must name files inside the landing folder, without '/'")
        scheme, sep, _ = self.uri.partition("://")
        if sep and scheme != "s3":
            raise ValueError(f"uri scheme '{scheme}://' is not supported: use a local folder or s3://bucket/prefix")
        if self.is_s3:
            if problem := s3_location_problem(self.uri):
                raise ValueError(f"uri {problem[0]}: {problem[1]}")
        elif self.conn_id is not None:
            raise ValueError("conn_id applies only to an s3:// uri; remove it for a local landing folder")
        return self


class Validation(StrictModel):
    """Great Expectations checks run on every new batch."""

    expectations: list[Expectation] = Field(
        default_factory=list, description="Great Expectations checks, one mapping each with a 'type'."
    )
    on_failure: Literal["fail", "quarantine", "warn"] = Field(
        "quarantine",
        description=(
            "fail: any failed check rejects the batch. quarantine: failing rows are written "
            "beside the batch and the rest pass, unless more than max_quarantine_rate of the "
            "rows fail. warn: record the failure and accept every row."
        ),
    )
    max_quarantine_rate: float = Field(
        0.02, ge=0, le=1, description="Largest share of quarantined rows before the whole batch is rejected."
    )
    chunk_rows: int = Field(
        250_000,
        ge=1_000,
        description=(
            "Rows read, checked and written at a time, so a batch larger than memory still validates "
            "(needs source.columns or a pinned schema; about 0.5 GB per million rows of 20 columns): "
            "a 10M-row flights batch peaks near 1.1 GiB at the default, 2.2 GiB at 1,000,000."
        ),
    )
    max_cell_bytes: int = Field(
        1_048_576,
        ge=1,
        description=(
            "Largest text cell (UTF-8 bytes). A row with a larger one fails check 'size:<column>' and is "
            "quarantined (with on_failure: fail, the batch is rejected), whatever on_failure says otherwise."
        ),
    )
    max_row_bytes: int = Field(
        4_194_304,
        ge=1,
        description=(
            "Largest row: its text cells' UTF-8 bytes plus 8 per other cell. A larger row fails check "
            "'size:row' and is quarantined like an oversized cell."
        ),
    )
