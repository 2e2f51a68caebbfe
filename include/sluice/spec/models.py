"""Pydantic models of a pipeline spec (``dags/<name>.pipeline.yaml``).

One typed model, three uses: compiling DAGs, ``sluice lint`` and the JSON Schema that
editors use to validate specs. Every model forbids unknown keys so a misspelt key is an
error with a hint, never a silently ignored setting.
"""

from __future__ import annotations

import math
import posixpath
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from sluice.spec.base import StrictModel, rule
from sluice.spec.expectations import ROW_LEVEL_EXPECTATIONS as ROW_LEVEL_EXPECTATIONS
from sluice.spec.expectations import Expectation
from sluice.spec.spark_conf import as_text, conf_problem

IDENTIFIER = r"^[a-z][a-z0-9_]{0,62}$"
#: Seeds reach numpy, whose seeds are unsigned 32-bit.
MAX_SEED = 2**32 - 1
#: Issue that brings object storage (s3://) for storage.root.
OBJECT_STORAGE_ISSUE = "issue 11"


def _did_you_mean(word: str, options: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


#: Airflow's cron aliases (``airflow.sdk.definitions.timetables._cron.CRON_PRESETS``), copied so
#: the spec layer never imports Airflow; a test checks they agree.
CRON_PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}


def cron_problem(expression: str) -> str | None:
    """Why Airflow would refuse ``expression`` as a cron schedule, or None if it is fine.

    Airflow maps its presets, then hands the expression to croniter (what
    ``CronTriggerTimetable.validate`` does); a date that never comes (``0 0 30 2 *``) passes
    that check but fails the scheduler later, so the next fire time is computed too.
    """
    from croniter import croniter

    resolved = CRON_PRESETS.get(expression.strip(), expression.strip())
    if not resolved or len(expression) > 200:
        return "empty or overlong cron expression"
    try:
        croniter(resolved, datetime(2026, 1, 1, tzinfo=UTC)).get_next(datetime)
    except Exception as exc:  # croniter raises several kinds (bad cron, bad date, value errors)
        return str(exc) or type(exc).__name__
    return None


CRON_HINT = "write 5 cron fields 'minute hour day month weekday' (e.g. '*/5 * * * *') or one of " + ", ".join(
    CRON_PRESETS
)


class Alerts(StrictModel):
    """Who hears about failures."""

    email: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(
        default_factory=list, description="Recipients of alert emails."
    )


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
        if value in ("@continuous", "@once"):
            return value
        problem = cron_problem(value)
        if problem:
            raise rule(f"schedule '{value}' is not '@continuous' or a valid cron: {problem}", CRON_HINT)
        return value

    @model_validator(mode="after")
    def _poll_within_timeout(self) -> Detect:
        if self.poll_seconds > self.timeout_seconds:
            raise rule(
                f"poll_seconds ({self.poll_seconds}) is longer than timeout_seconds ({self.timeout_seconds})",
                "poll more often than the wait times out",
                "poll_seconds",
            )
        return self


S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def split_s3(uri: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of an ``s3://`` uri; the prefix has no leading or trailing '/'."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def s3_location_problem(uri: str) -> tuple[str, str] | None:
    """What makes ``s3://bucket/prefix`` unusable, as (problem, fix), or None when it is fine."""
    bucket, prefix = split_s3(uri)
    if not S3_BUCKET.match(bucket):
        return (
            f"'{uri}' does not name a valid S3 bucket ('{bucket}')",
            "write s3://bucket/prefix with a 3-63 character lower-case bucket name",
        )
    if "//" in prefix or any(c in prefix for c in "*?["):
        return f"'{uri}': the prefix must be a plain folder", "write s3://bucket/prefix; put wildcards in pattern"
    return None


class S3Reachable:
    """A location that is a local folder or an ``s3://`` prefix reached through an Airflow aws connection.

    Mixed into :class:`Source` (``uri``) and :class:`Storage` (``root``), which name the location
    and declare ``conn_id`` (declared here for type checkers only: a field here would come first
    in the models' field order, and so in the schema and the spec reference).
    """

    if TYPE_CHECKING:
        conn_id: str | None

    @property
    def location(self) -> str:
        """The folder or ``s3://`` uri."""
        raise NotImplementedError

    @property
    def is_s3(self) -> bool:
        """Whether the location is an S3 prefix."""
        return self.location.startswith("s3://")

    @property
    def aws_conn_id(self) -> str:
        """The Airflow connection an s3:// location is reached with."""
        return self.conn_id or "aws_default"

    def s3_location(self) -> tuple[str, str]:
        """``(bucket, prefix)`` of an s3:// location; the prefix has no leading or trailing '/'."""
        return split_s3(self.location)


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
        1_000_000,
        ge=1_000,
        description=(
            "Rows read, checked and written at a time, so a batch larger than memory still validates "
            "(needs source.columns or a pinned schema; about 0.5 GB per million rows of 20 columns)."
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
    engine: Literal["local", "cluster"] = Field(
        "local", description="'local': Spark local[*] in the task; 'cluster': the Spark master below."
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


class Split(StrictModel):
    """How the holdout is chosen."""

    by: str | None = Field(None, description="Column whose latest value is the holdout (time-based split).")
    holdout: Literal["latest", "random"] = Field(
        "latest", description="'latest': the latest value of 'by' is held out; 'random': a seeded random share."
    )
    fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Holdout share for a random split, and the fallback while only one value of 'by' exists.",
    )
    seed: int = Field(42, ge=0, le=MAX_SEED, description="Seed of the random split.")


class Window(StrictModel):
    """Which accepted batches the model trains on: the last N, or those landed within a time span."""

    batches: int | None = Field(None, ge=1, le=100_000, description="The last N accepted batches (by landing time).")
    days: float | None = Field(
        None,
        gt=0,
        le=100_000,
        description="Batches landed within this many days of the newest accepted batch (its landing time).",
    )

    @model_validator(mode="after")
    def _one_bound(self) -> Window:
        if (self.batches is None) == (self.days is None):
            raise rule(
                "window needs exactly one of batches or days",
                "write e.g. window: {batches: 12} or window: {days: 90}; leave window out to train on all history",
            )
        return self


def _not_a_bool(value: Any) -> Any:
    """``sample: true`` would otherwise read as one row."""
    if isinstance(value, bool):
        raise rule(f"sample: {str(value).lower()} is not a number", "write a number of rows or a share, e.g. 0.25")
    return value


class Training(StrictModel):
    """Model class, parameters and columns."""

    target: str = Field(description="Label column produced by the feature job.")
    model: str = Field(
        pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$",
        description="Import path of a scikit-learn compatible estimator class.",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the model class.")
    features: list[str] | None = Field(
        None, description="Columns to train on; default: every column but target and drop."
    )
    drop: list[str] = Field(default_factory=list, description="Columns never used as features.")
    split: Split = Field(default_factory=Split, description="How the holdout is chosen.")  # type: ignore[arg-type]
    window: Window | None = Field(
        None, description="Which accepted batches to train on (last N or a time span); default: all of them."
    )
    refit: Literal["none", "after_gate"] = Field(
        "none",
        description=(
            "'none': the evaluated candidate is promoted as it is (fitted without the holdout). "
            "'after_gate': once it passes the gate (and approval), it is fitted again on train + holdout "
            "and that model is promoted, so the served model has seen the latest batch."
        ),
    )
    refit_tolerance: float = Field(
        0.02,
        ge=0,
        le=1,
        description=(
            "With refit 'after_gate': how much worse than the evaluated model the refit may score on the "
            "evaluated model's training rows, as a share of the evaluated score (0.02 = 2%); worse blocks "
            "promotion."
        ),
    )
    sample: Annotated[int | float | None, BeforeValidator(_not_a_bool)] = Field(
        None,
        description=(
            "Fit on a seeded sample of the training rows (the holdout is never sampled): an integer is a "
            "number of rows (1000000), a number above 0 and at most 1 a share of them (0.25); stratified by "
            "the target for classification metrics. Default: every training row."
        ),
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="Seed of the training sample; default: params.random_state when it is an integer, else split.seed.",
    )
    max_memory_gb: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description=(
            "Memory (GiB) the train step may use; it refuses to start a fit its estimate says needs more, "
            "naming the numbers (set sample, or give the worker more memory). Default: what the step uses "
            "when it starts plus 60% of the memory available then (the machine's, or the container's limit)."
        ),
    )

    @field_validator("params")
    @classmethod
    def _finite_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        def bad(v: Any) -> bool:
            if isinstance(v, float):
                return not math.isfinite(v)
            if isinstance(v, dict):
                return any(bad(x) for x in v.values())
            if isinstance(v, list):
                return any(bad(x) for x in v)
            return False

        for key, v in value.items():
            if bad(v):
                raise rule(f"params.{key} is not a finite number", "write a finite number (not .nan or .inf)", key)
        return value

    @field_validator("sample")
    @classmethod
    def _sample_size(cls, value: int | float | None) -> int | float | None:
        if isinstance(value, int) and value < 1:
            raise rule(
                f"sample {value} is not a number of rows",
                "write a number of rows (sample: 1000000) or a share above 0 and at most 1 (sample: 0.25)",
            )
        if isinstance(value, float) and not 0 < value <= 1:
            rows = f"sample: {int(value)}" if value.is_integer() and value > 1 else "sample: 1000000"
            raise rule(
                f"sample {value} is neither a share (above 0, at most 1) nor a whole number of rows",
                f"write a share such as sample: 0.25, or a number of rows without a decimal point ({rows})",
            )
        return value

    @model_validator(mode="after")
    def _target_is_not_a_feature(self) -> Training:
        if self.target in self.drop:
            raise rule("training.drop must not contain the target", f"remove '{self.target}' from drop", "drop")
        if self.features is not None and self.target in self.features:
            raise rule(
                f"training.features must not contain the target '{self.target}' (it would leak the label)",
                f"remove '{self.target}' from features",
                "features",
            )
        return self


HIGHER_IS_BETTER = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "log_loss": False,
    "r2": True,
    "rmse": False,
    "mae": False,
}
#: Metrics of a classifier and of a regressor (``sluice lint`` checks the model class's kind).
CLASSIFICATION_METRICS = frozenset({"roc_auc", "accuracy", "f1", "precision", "recall", "log_loss"})
REGRESSION_METRICS = frozenset({"r2", "rmse", "mae"})
#: Range each metric can take; a gate outside it can never be met (or always is).
METRIC_RANGE: dict[str, tuple[float, float]] = {
    **{m: (0.0, 1.0) for m in ("roc_auc", "accuracy", "f1", "precision", "recall")},
    "log_loss": (0.0, math.inf),
    "r2": (-math.inf, 1.0),
    "rmse": (0.0, math.inf),
    "mae": (0.0, math.inf),
}


class Gate(StrictModel):
    """When a candidate may replace the champion."""

    min: float | None = Field(None, description="Floor for higher-is-better metrics.")
    max: float | None = Field(None, description="Ceiling for lower-is-better metrics.")
    max_regression_vs_champion: float = Field(
        0.0, ge=0, le=1e9, description="How much worse than the champion, on the same holdout, still passes."
    )


class Evaluation(StrictModel):
    """Scoring and the promotion gate."""

    metric: Literal["roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "r2", "rmse", "mae"] = Field(
        description="Scored on the holdout for candidate and champion alike."
    )
    gate: Gate = Field(default_factory=Gate, description="Thresholds a candidate must meet.")  # type: ignore[arg-type]
    approval: Literal["auto", "manual"] = Field(
        "auto",
        description=(
            "'auto' promotes on a passed gate; 'manual' waits for a person to approve in the Airflow UI "
            "(Required Actions) before promoting; reject or timeout keeps the champion."
        ),
    )
    approval_timeout_hours: float = Field(
        24,
        gt=0,
        le=24 * 30,
        description=(
            "With approval 'manual': hours to wait for a response (at most 720, 30 days); then the approve "
            "task fails, champion kept."
        ),
    )

    @model_validator(mode="after")
    def _gate_matches_metric(self) -> Evaluation:
        higher = HIGHER_IS_BETTER[self.metric]
        if higher and self.gate.max is not None:
            raise rule(
                f"{self.metric} is higher-is-better: use gate.min, not gate.max", "rename max to min", "gate.max"
            )
        if not higher and self.gate.min is not None:
            raise rule(f"{self.metric} is lower-is-better: use gate.max, not gate.min", "rename min to max", "gate.min")
        low, high = METRIC_RANGE[self.metric]
        span = f"[{low:g}, {high:g}]".replace("inf", "∞")
        for key, value in (("min", self.gate.min), ("max", self.gate.max)):
            if value is not None and not low <= value <= high:
                raise rule(
                    f"gate.{key} {value:g} is outside the range of {self.metric} {span}: "
                    + ("no model can meet it" if (key == "min") == (value > high) else "every model meets it"),
                    f"choose a threshold within {span}",
                    f"gate.{key}",
                )
        if high - low < math.inf and self.gate.max_regression_vs_champion > high - low:
            raise rule(
                f"gate.max_regression_vs_champion {self.gate.max_regression_vs_champion:g} is wider than "
                f"the whole range of {self.metric} {span}: every candidate passes",
                "allow a small regression such as 0.01",
                "gate.max_regression_vs_champion",
            )
        return self


class LocalDeployment(StrictModel):
    """The model server as a local process."""

    host: str = Field(
        "127.0.0.1",
        description=(
            "Interface the model server listens on: a host name or an IP address "
            "(127.0.0.1: this machine only; 0.0.0.0: every interface)."
        ),
    )
    port: int = Field(5055, ge=1, le=65535, description="Stable port of the model server (kept across deploys).")
    health_timeout_seconds: int = Field(
        120, ge=5, le=3600, description="How long a new server may take to become healthy."
    )
    watch_schedule: str | None = Field(
        "*/5 * * * *",
        description=(
            "Cron of <pipeline>__serving, which checks the model server and, when it is down, "
            "answers with another version, or shares its port with a stray, restarts the "
            "recorded version and alerts; null: no watch."
        ),
    )

    @field_validator("watch_schedule")
    @classmethod
    def _watch_schedule_is_cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        problem = cron_problem(value)
        if problem:
            raise rule(f"deployment.local.watch_schedule '{value}' is not a valid cron: {problem}", CRON_HINT)
        return value

    @field_validator("host")
    @classmethod
    def _host_or_address(cls, value: str) -> str:
        problem = host_problem(value)
        if problem:
            raise rule(*problem)
        return value


_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
HOST_HINT = "write a host name or an IP address, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"


def host_problem(value: str) -> tuple[str, str] | None:
    """Why ``value`` is not a host name or IP address a server can listen on, as (problem, fix), or None."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels):
        if not all(label.isdigit() for label in labels):
            return None
        return f"host '{value}' is not an IP address", HOST_HINT
    if "://" in value:
        name = urlsplit(value).hostname
        fix = f"write the host alone: host: {name}" if name else HOST_HINT
        return f"host '{value}' is a URL, not a host name", fix
    if value.count(":") == 1 and value.rpartition(":")[2].isdigit():
        return f"host '{value}' has a port", "the port is deployment.local.port: write the host alone"
    return f"host '{value}' is not a host name or an IP address", HOST_HINT


K8S_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
K8S_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"
_QUANTITY_SUFFIX = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def parse_quantity(quantity: str) -> float:
    """A Kubernetes quantity (``250m``, ``1``, ``512Mi``) as a number of units."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", quantity)
    if not match:
        raise ValueError(f"'{quantity}' is not a Kubernetes quantity")
    return float(match.group(1)) * _QUANTITY_SUFFIX[match.group(2) or ""]


_IMAGE_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_IMAGE_DOMAIN = rf"(?:{_IMAGE_HOST_PART}(?:\.{_IMAGE_HOST_PART})*(?::[0-9]+)?)"
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
#: An image reference as the distribution spec defines it (``[registry/]path[:tag][@digest]``).
IMAGE_REFERENCE = re.compile(
    rf"(?:{_IMAGE_DOMAIN}/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


class ResourceList(StrictModel):
    """CPU and memory, as Kubernetes quantities."""

    cpu: str = Field(pattern=K8S_QUANTITY, description="CPU, e.g. '250m' or '1'.")
    memory: str = Field(pattern=K8S_QUANTITY, description="Memory, e.g. '512Mi' or '2Gi'.")


class Resources(StrictModel):
    """Requests and limits of a container."""

    requests: ResourceList = Field(
        default_factory=lambda: ResourceList(cpu="250m", memory="512Mi"),
        description="What the scheduler reserves.",
    )
    limits: ResourceList = Field(
        default_factory=lambda: ResourceList(cpu="1", memory="1Gi"), description="The most the container may use."
    )

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Resources:
        for kind in ("cpu", "memory"):
            request, limit = getattr(self.requests, kind), getattr(self.limits, kind)
            if parse_quantity(limit) <= 0:
                raise rule(f"limits.{kind} is {limit}: nothing could run", "set it above 0", f"limits.{kind}")
            if parse_quantity(limit) < parse_quantity(request):
                raise rule(
                    f"limits.{kind} ({limit}) is below requests.{kind} ({request}): Kubernetes rejects the pod",
                    f"raise limits.{kind} to at least {request} or lower the request",
                    f"limits.{kind}",
                )
        return self


class KubernetesDeployment(StrictModel):
    """The model server as a Kubernetes Deployment and Service, applied by a deployer pod."""

    namespace: str = Field(pattern=K8S_NAME, description="Namespace of the deployer pod, Deployment and Service.")
    image: str = Field(
        min_length=1,
        description="Project image the deployer pod runs (docker/Dockerfile.airflow), pinned by tag or digest.",
    )
    serving_image: str = Field(
        min_length=1, description="Model-server image (docker/Dockerfile.serving), pinned by tag or digest."
    )
    mlflow_tracking_uri: str = Field(
        pattern=r"^[a-z][a-z0-9+.-]*:",
        description="MLflow tracking/registry URI reachable from inside the cluster (deployer and model server).",
    )
    replicas: int = Field(2, ge=1, le=100, description="Model-server pods.")
    port: int = Field(8080, ge=1024, le=65535, description="Container and Service port (non-root: 1024 or above).")
    resources: Resources = Field(default_factory=Resources, description="Model-server container resources.")  # type: ignore[arg-type]
    deployer_resources: Resources = Field(
        default_factory=lambda: Resources(
            requests=ResourceList(cpu="100m", memory="256Mi"), limits=ResourceList(cpu="500m", memory="512Mi")
        ),
        description="Deployer pod resources.",
    )
    service_account: str = Field(
        "sluice-deployer",
        pattern=K8S_NAME,
        description="Service account of the deployer pod; bound to the Role from 'sluice plan --manifests'.",
    )
    serving_service_account: str = Field(
        "default", pattern=K8S_NAME, description="Service account of the model-server pods (needs no API access)."
    )
    conn_id: str = Field("kubernetes_default", description="Airflow connection of the cluster (ignored in_cluster).")
    in_cluster: bool = Field(False, description="Use the Airflow worker's own service account instead of conn_id.")
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        "IfNotPresent", description="Image pull policy of both images."
    )
    image_pull_secrets: list[Annotated[str, Field(pattern=K8S_NAME)]] = Field(
        default_factory=list, description="Secrets used to pull from a private registry."
    )
    env_from_secrets: list[Annotated[str, Field(pattern=K8S_NAME)]] = Field(
        default_factory=list,
        description="Secrets exposed as environment to deployer and model server (e.g. S3 or MLflow credentials).",
    )
    rollout_timeout_seconds: int = Field(
        600, ge=5, le=7200, description="How long a rollout may take before it is rolled back."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on every object and pod.")

    @field_validator("image", "serving_image")
    @classmethod
    def _image_reference(cls, value: str) -> str:
        if value != value.strip() or not IMAGE_REFERENCE.fullmatch(value) or len(value) > 512:
            raise rule(
                f"'{value}' is not an image reference",
                "write [registry/]repository[:tag][@sha256:digest] in lower case, e.g. ghcr.io/acme/sluice:1.4.0",
            )
        return value

    @field_validator("labels")
    @classmethod
    def _no_reserved_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith(("sluice.io/", "app.kubernetes.io/")):
                raise ValueError(f"label '{key}' is set by sluice; use a key outside sluice.io/ and app.kubernetes.io/")
            if not re.fullmatch(r"([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", key):
                raise ValueError(f"'{key}' is not a valid Kubernetes label key")
        for v in value.values():
            if not re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", v):
                raise ValueError(f"'{v}' is not a valid Kubernetes label value (63 characters, alphanumeric, -_.)")
        return value


#: Deploy target names a spec may use (``deployment.target``) -> what they mean. The
#: targets themselves are :data:`sluice.steps.targets.TARGETS`; registering one there with
#: :func:`sluice.steps.targets.register` adds its name here (the spec cannot import steps).
DEPLOY_TARGETS: dict[str, str] = {
    "local": "the model server as a local process",
    "kubernetes": "a Deployment applied by a pod",
}


def _target_enum(schema: dict[str, Any]) -> None:
    # Read when the schema is generated, so a registered target is in the editor's list too.
    schema["enum"] = list(DEPLOY_TARGETS)


class Deployment(StrictModel):
    """Where the champion is served."""

    target: str = Field(
        "local",
        description="A registered deploy target: 'local': the model server as a local process; "
        "'kubernetes': a Deployment applied by a pod.",
        json_schema_extra=_target_enum,
    )
    local: LocalDeployment = Field(default_factory=LocalDeployment, description="Settings of the local target.")  # type: ignore[arg-type]
    kubernetes: KubernetesDeployment | None = Field(
        None, description="Settings of the kubernetes target (required when target is 'kubernetes')."
    )

    @field_validator("target")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in DEPLOY_TARGETS:
            raise rule(
                f"no deploy target '{value}'",
                "use one of the registered targets: " + ", ".join(f"'{name}'" for name in DEPLOY_TARGETS),
            )
        return value

    @model_validator(mode="after")
    def _kubernetes_needs_settings(self) -> Deployment:
        if self.target == "kubernetes" and self.kubernetes is None:
            raise ValueError(
                "target 'kubernetes' needs a 'kubernetes' section with at least namespace, image, "
                "serving_image and mlflow_tracking_uri"
            )
        return self


DriftMethod = Literal[
    "wasserstein",
    "jensenshannon",
    "ks",
    "chisquare",
    "z",
    "psi",
    "kl_div",
    "hellinger",
    "anderson",
    "cramer_von_mises",
    "mannw",
    "ed",
    "es",
    "t_test",
    "TVD",
    "g_test",
    "fisher_exact",
    "empirical_mmd",
]


class Drift(StrictModel):
    """How <pipeline>__monitor compares a new batch with the champion's training data (Evidently)."""

    drift_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description=(
            "Share of the compared columns that must drift for the batch to count as drifted "
            "(Evidently's dataset drift: drifted columns / columns >= drift_share)."
        ),
    )
    sample_size: int = Field(
        5000,
        ge=100,
        le=10_000_000,
        description=(
            "Rows drawn (seeded, without replacement) from the reference and from the new data "
            "before comparing; a side with fewer rows is used whole."
        ),
    )
    seed: int = Field(42, ge=0, le=MAX_SEED, description="Seed of the sampling, so a re-run gives the same numbers.")
    columns: list[str] | None = Field(
        None,
        min_length=1,
        description=(
            "Batch columns to compare. Default: the batch columns the champion reads (its features "
            "that are raw batch columns), or every shared column when it reads none directly."
        ),
    )
    methods: dict[str, DriftMethod] = Field(
        default_factory=dict,
        description=(
            "Drift method per column (Evidently stattest names), e.g. {distance: ks}. Default, whatever "
            "the sample size: Wasserstein distance (normed) for numbers with more than 5 distinct "
            "values, Jensen-Shannon distance for categories and numbers with at most 5, both drifting "
            "at 0.1 (Evidently's choice above 1,000 rows; below that Evidently would pick p-value "
            "tests, which flag calm small batches)."
        ),
    )
    threshold: float | None = Field(
        None,
        gt=0,
        le=100,
        description=(
            "Per-column threshold for every column. Default: the method's own (0.1 for the "
            "distances, 0.05 for the p-value tests). Distances drift at or above it, p-values below it."
        ),
    )
    min_rows: int = Field(
        1000,
        ge=1,
        le=10_000_000,
        description=(
            "Fewest rows each side (the champion's training data, the new batches) must have to be "
            "compared. Below it the verdict is 'not enough data': no alert, no drift event, and the "
            "new batches are compared again together with the next ones."
        ),
    )


class Monitoring(StrictModel):
    """The <pipeline>__monitor DAG: drift of every new batch against the champion's data."""

    enabled: bool = Field(True, description="Build <pipeline>__monitor (runs on every new validated batch).")
    drift: Drift = Field(default_factory=Drift, description="Drift settings.")  # type: ignore[arg-type]


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
        if value is None:
            return value
        problem = cron_problem(value)
        if problem:
            raise rule(f"retrain_schedule '{value}' is not a valid cron: {problem}", CRON_HINT)
        return value

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
            return self
        hint = f"declared in source.columns: {', '.join(declared) or 'none'}"
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
