"""The typed records the steps exchange, and the one codec that turns them into JSON and back.

Every record is a frozen pydantic model that refuses unknown fields: a typo in a key fails
where the record is built or decoded, not three tasks later. Verdicts and statuses are
``StrEnum``s, so they compare equal to the strings written by older runs and an unknown
value is refused by :func:`decode` with the field and the allowed values.

The same codec serves the XCom return values (Airflow 3 stores JSON, so tasks return
``encode(record)``) and the files the steps write (``decision.json``, ``trigger.json``,
``drift.json``, ``validation.json``, ``deploy/current.json``). Field names are those of
the files written before these types existed, so files from older runs still decode.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sluice.services.batch_record import BatchRecord, BatchStatus
from sluice.services.drift import ColumnDrift
from sluice.spec.models import ColumnType

log = logging.getLogger(__name__)

__all__ = [
    "AssetEvent",
    "BatchAnnouncement",
    "BatchOutcome",
    "BatchRecord",
    "BatchStatus",
    "ChampionScore",
    "Check",
    "ColumnDrift",
    "DeployResult",
    "DriftResult",
    "DriftStatus",
    "FeatureResult",
    "FittedRows",
    "GateDecision",
    "GateThresholds",
    "GateVerdict",
    "HoldoutInfo",
    "KubernetesDeployResult",
    "LandResult",
    "LocalDeployResult",
    "LocalDeployment",
    "PromoteResult",
    "Record",
    "RecordError",
    "RefitResult",
    "SchemaPin",
    "ScoredRun",
    "ServingCheck",
    "ServingStatus",
    "SmokeCheck",
    "TrainResult",
    "Trigger",
    "TriggerDecision",
    "ValidationOutcomes",
    "decode",
    "decode_or_none",
    "encode",
]


class Record(BaseModel):
    """Base of every step record: frozen, and unknown fields are an error.

    Validators are built on first use (``defer_build``): the DAG file imports this module
    through the task callables, and building ~25 schemas there cost every parse ~25 ms.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


R = TypeVar("R", bound=Record)


class RecordError(ValueError):
    """A JSON value does not decode to the record type it should be (names the fields and why)."""


def encode(record: Record) -> dict[str, Any]:
    """The JSON-safe form of ``record`` (enums as their strings), for XCom and for files."""
    return record.model_dump(mode="json")


def decode(cls: type[R], data: Any) -> R:
    """Rebuild a ``cls`` record from its JSON form (as written by :func:`encode` or by older runs).

    Raises:
        RecordError: A field is missing, unknown, or has a value the type refuses (an unknown
            status or verdict string is named with the allowed values).
    """
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors(include_url=False)
        )
        raise RecordError(f"not a valid {cls.__name__} record: {problems}") from None


def decode_or_none(cls: type[R], data: object, source: str = "", unread: list[str] | None = None) -> R | None:
    """:func:`decode` for readers that must go on without the record: None when it is absent or invalid.

    The alerts, the links and the approval body read step results that may be missing (the
    step did not run) or not decodable (a result from an older sluice, a value a person
    pushed): they then say less, and never fail. An invalid value is logged, and named in
    ``unread`` when it is given; an absent one (None, or empty) is just None.

    Args:
        cls: The record type.
        data: The JSON value (an XCom, a file's content), or None.
        source: What the value is, for the log and ``unread`` (e.g. "the result of task evaluate").
        unread: Collects one line per value that could not be decoded, with why.
    """
    if not data:
        return None
    try:
        return decode(cls, data)
    except RecordError as exc:
        what = f"{source or cls.__name__}: {exc}"
        log.warning("cannot read %s", what)
        if unread is not None:
            unread.append(what)
        return None


# --------------------------------------------------------------------------- statuses


class GateVerdict(StrEnum):
    """The gate's verdict on a candidate."""

    PASS = "pass"  # noqa: S105 -- a verdict, not a password
    FAIL = "fail"


class DriftStatus(StrEnum):
    """What a monitor run could do: compare, or why not."""

    COMPARED = "compared"
    NO_REFERENCE = "no_reference"
    NO_NEW_BATCHES = "no_new_batches"
    #: A side has fewer rows than ``monitoring.drift.min_rows``: too few to tell drift from noise.
    NOT_ENOUGH_DATA = "not_enough_data"


class ServingStatus(StrEnum):
    """What the serving watch found on the local target's port, and what it did."""

    HEALTHY = "healthy"  # the recorded version answers, nothing else on the port
    NOTHING = "nothing"  # nothing recorded and nothing running: no deploy yet
    RESTARTED = "restarted"  # it was wrong; the recorded version serves again
    DOWN = "down"  # it was wrong and the restart failed


class Trigger(StrEnum):
    """What started a train run."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    NEW_DATA = "new_data"
    DRIFT = "drift"


# --------------------------------------------------------------------------- ingest


class LandResult(Record):
    """What one landing pass did.

    Attributes:
        new: Ids of batches landed by this pass.
        duplicates: ``{file name: batch id}`` for files whose content was already landed.
        archived: Landing files moved to ``_processed/``.
        ignored: Hidden or temporary names in the landing folder (never landed).
        unsettled: Files still being written (size or mtime changed during the settle time).
        waiting_for_marker: Files whose completion marker is not there yet.
        changed: Files whose content changed while being landed: left for the next run.
        refused: ``{name: why}``: inputs refused for the first time by this pass: matching
            folders and symlinks (moved to ``_rejected/``) and dot-named files that match
            without their dot (left in place). Each input is in one pass's ``refused`` only.
        replaced_names: ``{new batch id: [earlier batch ids]}`` for a name reused with new content.
        held: ``{name: why}``: settled files that still look unfinished (open for writing, or
            a CSV whose last line is cut): left for the next run.
        changed_after_landing: ``{new batch id: earlier batch id}``: an archived file that
            changed after it was landed (its writer had paused): its complete content landed
            as the new batch, which supersedes the earlier one.
        rejected_again: ``{file name: batch id}``: duplicates whose batch had been rejected.
    """

    new: list[str] = Field(default_factory=list)
    duplicates: dict[str, str] = Field(default_factory=dict)
    archived: list[str] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)
    unsettled: list[str] = Field(default_factory=list)
    waiting_for_marker: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict)
    replaced_names: dict[str, list[str]] = Field(default_factory=dict)
    held: dict[str, str] = Field(default_factory=dict)
    changed_after_landing: dict[str, str] = Field(default_factory=dict)
    rejected_again: dict[str, str] = Field(default_factory=dict)

    def news(self) -> bool:
        """Whether this pass found something a person should hear of (refused inputs, changed archives)."""
        return bool(self.refused or self.changed_after_landing)


class BatchOutcome(Record):
    """The verdict on one batch (the ``validate`` XCom; ``validation.json`` carries more).

    Attributes:
        batch_id: The batch.
        status: ``accepted`` (rows go to training) or ``rejected`` (nothing does).
        reason: Why, in one sentence with the numbers.
        rows: Rows in the file (0 when unreadable).
        quarantined: Rows written to ``quarantine.parquet``.
        quarantine_rate: quarantined / rows.
        failed_checks: ``"<check> <column>: <n> rows"`` for each failed check.
        report: Path of ``validation.json``.
    """

    batch_id: str
    status: BatchStatus
    reason: str
    rows: int = 0
    quarantined: int = 0
    quarantine_rate: float = 0.0
    failed_checks: list[str] = Field(default_factory=list)
    report: str = ""


class ValidationOutcomes(Record):
    """The ``validate`` task's result: one outcome per batch it validated."""

    outcomes: list[BatchOutcome] = Field(default_factory=list)


class SchemaPin(Record):
    """The schema batches are held to when the spec declares no ``source.columns`` (``schema/pinned.json``).

    Written by the validate step of the first accepted batch, and changed only by
    ``sluice schema-pin``. A pin with ``columns`` None was dropped on purpose
    (``--reset``): the next accepted batch pins again.

    Attributes:
        columns: ``(name, type)`` pairs, as ``source.columns`` would declare them, in the batch's
            column order (a list: JSON records are written with sorted keys); None when dropped.
        batch_id: The batch the columns were inferred from (None when dropped).
        source_file: That batch's file name as it landed.
        pinned_at: When the pin was written (seconds since the epoch).
        how: Who wrote it: ``first accepted batch``, ``oldest accepted batch`` (a store that
            had accepted batches before pinning existed), ``sluice schema-pin --from-batch``,
            ``sluice schema-pin --reset``.
        guessed: Columns with no value to infer a type from (entirely null): pinned as
            ``string``, a guess.
    """

    columns: list[tuple[str, ColumnType]] | None
    batch_id: str | None = None
    source_file: str = ""
    pinned_at: float
    how: str
    guessed: list[str] = Field(default_factory=list)

    @property
    def types(self) -> dict[str, str] | None:
        """``columns`` as the ``{name: type}`` mapping ``source.columns`` is, in the batch's order."""
        return None if self.columns is None else dict(self.columns)


class BatchAnnouncement(Record):
    """The batches one ``publish`` announced (the asset event's extra and the XCom).

    Attributes:
        batches: Batch ids announced.
        rows: Rows in those batches.
        quarantined: Rows quarantined from them.
    """

    batches: list[str]
    rows: int
    quarantined: int


# --------------------------------------------------------------------------- train


class FeatureResult(Record):
    """A feature table and what it was built from.

    Attributes:
        path: With ``features.scope: history``, the parquet folder of the table; with
            ``scope: batch``, the folder whose ``meta.json`` names the per-batch tables.
        key: Content key (batches + job + inputs); the same key is never built twice.
        batches: ``{batch_id: sha256}`` of the batches the table holds (the training window),
            oldest first.
        job_hash: SHA-256 (16 hex) of the feature job file.
        rows: Rows in the table.
        cached: True when an earlier run had built the same table.
        parts: With ``scope: batch``, the parquet folder of each batch's cached table, in the
            order of ``batches``; the table is their rows together. Empty with ``scope: history``.
        computed: Batches whose features this run computed (the others came from the cache).
    """

    path: str
    key: str
    batches: dict[str, str]
    job_hash: str
    rows: int
    cached: bool = False
    parts: list[str] = Field(default_factory=list)
    computed: list[str] = Field(default_factory=list)


class FittedRows(Record):
    """The training rows a candidate was fitted on: every one, or a seeded sample (``training.sample``).

    Attributes:
        available: Labelled training rows (the holdout split off), what a fit on everything uses.
        fitted: Rows the model was fitted on.
        fraction: ``fitted / available``.
        setting: ``training.sample`` as written (``"1000000"``, ``"0.25"``), or None: no sample.
        stratified: Whether the sample kept the target's class shares (classification metrics).
        seed: Seed of the sample, or None when no row was left out.
    """

    available: int
    fitted: int
    fraction: float
    setting: str | None = None
    stratified: bool = False
    seed: int | None = None

    def describe(self) -> str:
        """In words, e.g. "1,000,000 of 9,166,012 training rows (10.9%), stratified, seed 42"."""
        if self.fitted >= self.available:
            return f"all {self.available:,} training rows"
        how = ", stratified by the target" if self.stratified else ""
        return f"{self.fitted:,} of {self.available:,} training rows ({self.fraction:.1%}){how}, seed {self.seed}"


class TrainResult(Record):
    """A trained candidate.

    Attributes:
        mlflow_run_id: The MLflow run holding the model.
        holdout_path: Parquet of the holdout rows (candidate and champion are scored on it).
        split: How the holdout was chosen, in words.
        train_rows: Rows used for fitting.
        holdout_rows: Rows held out.
        features: Columns the model reads.
        trained_on: Batches whose rows the candidate was fitted on.
        held_out: Batches whose rows were held out (a batch split row by row is in both lists).
        fitted: The training rows fitted on and how they were sampled (None in results of
            runs from before ``training.sample``).
    """

    mlflow_run_id: str
    holdout_path: str
    split: str
    train_rows: int
    holdout_rows: int
    features: list[str]
    trained_on: list[str] = Field(default_factory=list)
    held_out: list[str] = Field(default_factory=list)
    fitted: FittedRows | None = None


class Check(Record):
    """One condition of the gate."""

    name: str
    passed: bool
    detail: str


class GateThresholds(Record):
    """The spec's gate bounds the decision was taken with."""

    min: float | None = None
    max: float | None = None
    max_regression_vs_champion: float = 0.0


class ScoredRun(Record):
    """The candidate: its MLflow run, its holdout score and the batches it was fitted on."""

    run_id: str
    score: float
    trained_on: list[str] = Field(default_factory=list)


class ChampionScore(Record):
    """The champion the candidate was compared with (score None: it could not be scored)."""

    version: str
    run_id: str | None
    score: float | None = None


class HoldoutInfo(Record):
    """The rows both models were scored on, and the batches they came from.

    Attributes:
        path: Parquet of the holdout rows.
        rows: Rows scored.
        split: How the holdout was chosen, in words.
        batches: Batches the rows came from.
        scored: How the metric was computed (exact, or from a bounded summary past
            ``EXACT_ROWS`` rows, with its error bound); None in decisions from before it.
    """

    path: str
    rows: int
    split: str
    batches: list[str] = Field(default_factory=list)
    scored: str | None = None


class GateDecision(Record):
    """The gate decision (``runs/<run>/decision.json``, the ``evaluate`` XCom, MLflow ``gate/decision.json``).

    Attributes:
        pipeline: Pipeline name.
        verdict: pass or fail.
        reason: The checks in words, failed ones first.
        metric: The evaluation metric.
        higher_is_better: The metric's direction.
        thresholds: The gate's bounds.
        candidate: Candidate run and score.
        champion: The champion compared with, or None when there was none.
        holdout: The holdout both were scored on.
        checks: Each condition and whether it held.
        airflow_run_id: The train run.
        decided_at: Epoch seconds.
        fitted: The training rows the candidate was fitted on, all or a ``training.sample``
            (None in decisions written before it existed).
    """

    pipeline: str
    verdict: GateVerdict
    reason: str
    metric: str
    higher_is_better: bool
    thresholds: GateThresholds
    candidate: ScoredRun
    champion: ChampionScore | None
    holdout: HoldoutInfo
    checks: list[Check]
    airflow_run_id: str
    decided_at: float
    fitted: FittedRows | None = None


class PromoteResult(Record):
    """Outcome of a promotion.

    Attributes:
        version: Registered model version now behind ``@champion``.
        previous: Version that was champion before, or None.
        changed: False when the alias already pointed here (a retry).
    """

    version: str
    previous: str | None
    changed: bool


class RefitResult(Record):
    """A candidate refitted on train + holdout after the gate (``training.refit: after_gate``).

    Attributes:
        mlflow_run_id: The refit's MLflow run (what ``promote`` registers).
        evaluated_run_id: The candidate run the gate evaluated (its decision record stays the record).
        trained_on: Batches the refit was fitted on (every batch of the window).
        rows: Rows it was fitted on.
        metric: The evaluation metric of the check.
        evaluated_score: The evaluated model's score on its own training rows.
        refit_score: The refit's score on those same rows.
        tolerance: ``training.refit_tolerance``: how much worse, relative to ``evaluated_score``, still passes.
        check_rows: Rows the check scored (a seeded sample of the evaluated model's training rows).
        passed: The refit is not worse than the evaluated model beyond the tolerance.
    """

    mlflow_run_id: str
    evaluated_run_id: str
    trained_on: list[str]
    rows: int
    metric: str
    evaluated_score: float
    refit_score: float
    tolerance: float
    check_rows: int
    passed: bool


# --------------------------------------------------------------------------- deploy


class SmokeCheck(Record):
    """The smoke prediction a new server passed: rows sent, the first predictions, and the rows.

    ``inputs`` (the rows sent) let the serving watch restart the recorded version with the
    same check; records written before it have none.
    """

    rows: int
    predictions: list[Any]
    inputs: list[dict[str, Any]] = Field(default_factory=list)


class LocalDeployment(Record):
    """What the local target serves (``deploy/current.json`` and its history).

    Attributes:
        pipeline: Pipeline name.
        version: Registered model version served.
        model_uri: ``models:/<pipeline>/<version>``.
        pid: Server process (leader of its own process group).
        host: Interface of the public port.
        port: Public (shared) port.
        admin_port: The server's private port (health and smoke checks).
        url: The public invocations URL.
        log: Server log file.
        started_at: Epoch seconds.
        smoke: The smoke prediction it passed.
    """

    pipeline: str
    version: str
    model_uri: str
    pid: int
    host: str
    port: int
    admin_port: int
    url: str
    log: str
    started_at: float
    smoke: SmokeCheck


class LocalDeployResult(LocalDeployment):
    """A local deploy's outcome (the ``deploy`` XCom): the deployment, and what changed.

    Attributes:
        changed: False when this version was already served and healthy (nothing was done).
        previous_version: Version served before, or None.
    """

    changed: bool
    previous_version: str | None

    def deployment(self) -> LocalDeployment:
        """The deployment alone (what ``current.json`` holds)."""
        return LocalDeployment.model_validate(self.model_dump(exclude={"changed", "previous_version"}))


class ServingCheck(Record):
    """One look of the serving watch at a local model server (the ``watch_serving`` XCom).

    Attributes:
        status: What it found and did.
        version: The recorded version (None: nothing recorded).
        found: What was wrong (the ``sluice status`` lines), empty when healthy.
        error: Why the restart failed (``down`` only).
    """

    status: ServingStatus
    version: str | None = None
    found: list[str] = Field(default_factory=list)
    error: str = ""


class KubernetesDeployResult(Record):
    """Outcome of a successful Kubernetes deploy.

    Attributes:
        version: Model version the Deployment serves now.
        previous_version: Version it served before (None on the first deploy).
        changed: False when the version was already rolled out (nothing was written).
        deployment: ``namespace/name`` of the Deployment.
        service: In-cluster URL of the model server.
    """

    version: str
    previous_version: str | None
    changed: bool
    deployment: str
    service: str


# --------------------------------------------------------------------------- monitor and retrain


#: What a deploy target's ``deploy()`` returns: every target's result names the version it
#: serves, the one before, and whether anything changed.
DeployResult = LocalDeployResult | KubernetesDeployResult


# ColumnDrift (one column of a DriftResult) is defined by the Evidently adapter,
# sluice.services.drift, which reads it out of the report, and re-exported here.
class DriftResult(Record):
    """What one monitor run found (the ``compute_drift`` XCom and ``drift.json``).

    Attributes:
        status: compared, no_reference (no champion or reference yet), no_new_batches, or
            not_enough_data (a side below ``monitoring.drift.min_rows``).
        drift_share: Share of compared columns that drifted (None when nothing was compared).
        threshold: The spec's ``drift_share``: the batch drifted when the share reaches it.
        drift_detected: Whether the batch drifted.
        columns: Per-column numbers.
        report_path: Evidently HTML report, or None.
        mlflow_run_id: The monitoring run in the pipeline's experiment, or None.
        batches: Batch ids compared (current data).
        champion_version: Registered version whose training data is the reference, or None.
        reference_batches: Batch ids of the reference data.
        rows: Rows compared per side after sampling: ``{"reference": n, "current": n}``
            (for not_enough_data: the rows each side had).
        sample_size: Sampling size used per side.
        seed: Sampling seed.
        reason: One line for the log.
    """

    status: DriftStatus
    drift_share: float | None
    threshold: float
    drift_detected: bool
    columns: list[ColumnDrift]
    report_path: str | None
    mlflow_run_id: str | None
    batches: list[str]
    champion_version: str | None
    reference_batches: list[str] = Field(default_factory=list)
    rows: dict[str, int] = Field(default_factory=dict)
    sample_size: int = 0
    seed: int = 0
    reason: str = ""

    def drifted_columns(self) -> list[ColumnDrift]:
        """The columns that drifted."""
        return [c for c in self.columns if c.drifted]

    def summary(self) -> str:
        """One line with the numbers (used by the log, the failure message and the asset event)."""
        if self.status != DriftStatus.COMPARED:
            return self.reason
        drifted = self.drifted_columns()
        cols = ", ".join(f"{c.column} {c.method} {c.score:.3f} (threshold {c.threshold})" for c in drifted)
        return (
            f"drift share {self.drift_share or 0.0:.3f} {'>=' if self.drift_detected else '<'} threshold "
            f"{self.threshold} ({len(drifted)}/{len(self.columns)} columns drifted{': ' + cols if cols else ''}); "
            f"batches {', '.join(self.batches)} vs champion v{self.champion_version}'s data; report {self.report_path}"
        )


class AssetEvent(Record):
    """An asset event that started a run: its URI and extra."""

    uri: str
    extra: dict[str, Any] = Field(default_factory=dict)


class TriggerDecision(Record):
    """Why a train run trains or not (``runs/<run>/trigger.json`` and the XCom).

    Attributes:
        proceed: False when the run is skipped.
        triggers: What started the run.
        reason: One line for the log and the demo summary.
        batches: Accepted batch ids in ``training.window`` when the decision was taken (what a retrain reads).
        champion_version: The champion at that time, or None.
        events: Asset events that started the run.
        airflow_run_id: The train run.
        decided_at: Epoch seconds.
    """

    proceed: bool
    triggers: list[Trigger]
    reason: str
    batches: list[str]
    champion_version: str | None
    events: list[AssetEvent] = Field(default_factory=list)
    airflow_run_id: str = ""
    decided_at: float = 0.0
