"""The step records and their one codec: round trips, refused values, and files written by older runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sluice.services.storage import PipelineStore
from sluice.spec.models import Validation
from sluice.steps import records
from sluice.steps.deploy import recorded_deployment
from sluice.steps.records import (
    AssetEvent,
    BatchAnnouncement,
    BatchOutcome,
    BatchStatus,
    ChampionScore,
    Check,
    ColumnDrift,
    DriftResult,
    DriftStatus,
    FeatureResult,
    FittedRows,
    GateDecision,
    GateThresholds,
    GateVerdict,
    HoldoutInfo,
    KubernetesDeployResult,
    LandResult,
    LocalDeployment,
    LocalDeployResult,
    PromoteResult,
    Record,
    RecordError,
    RefitResult,
    SchemaPin,
    ScoredRun,
    ServingCheck,
    ServingStatus,
    SmokeCheck,
    TrainResult,
    Trigger,
    TriggerDecision,
    ValidationOutcomes,
    decode,
    encode,
)
from sluice.steps.retrain import last_retrain
from sluice.steps.validate import validate_batch

# ------------------------------------------------------------------ files in the shape older runs wrote them
# Copied from files the code before the typed records wrote (same keys, same nesting).

OLD_DECISION: dict[str, Any] = {
    "pipeline": "flights_delay",
    "verdict": "pass",
    "reason": "candidate roc_auc 0.7012 >= min 0.6; candidate 0.7012 >= champion 0.6950 - 0.01",
    "metric": "roc_auc",
    "higher_is_better": True,
    "thresholds": {"min": 0.6, "max": None, "max_regression_vs_champion": 0.01},
    "candidate": {"run_id": "0b5e1c2d", "score": 0.7012},
    "champion": {"version": "1", "run_id": "9f8e7d6c", "score": 0.695},
    "holdout": {"path": "/data/sluice/flights_delay/runs/r/holdout.parquet", "rows": 412, "split": "holdout = x"},
    "checks": [
        {"name": "floor", "passed": True, "detail": "candidate roc_auc 0.7012 >= min 0.6"},
        {"name": "vs_champion", "passed": True, "detail": "candidate 0.7012 >= champion 0.6950 - 0.01"},
    ],
    "airflow_run_id": "asset_triggered__2026-11-01T00:00:00",
    "decided_at": 1795000000.5,
}

OLD_TRIGGER: dict[str, Any] = {
    "proceed": True,
    "triggers": ["new_data", "drift"],
    "reason": "started by new_data + drift",
    "batches": ["a1b2c3d4e5f60718"],
    "champion_version": "2",
    "events": [{"uri": "sluice://flights_delay/batches", "extra": {"batches": ["a1b2c3d4e5f60718"], "rows": 9}}],
    "airflow_run_id": "asset_triggered__1",
    "decided_at": 1795000100.0,
}

OLD_DRIFT: dict[str, Any] = {
    "status": "compared",
    "drift_share": 0.5,
    "threshold": 0.3,
    "drift_detected": True,
    "columns": [
        {"column": "dest", "method": "Jensen-Shannon distance", "score": 0.21, "threshold": 0.1, "drifted": True},
        {"column": "origin", "method": "Jensen-Shannon distance", "score": 0.02, "threshold": 0.1, "drifted": False},
    ],
    "report_path": "/data/sluice/flights_delay/monitor/r/report.html",
    "mlflow_run_id": "77aa",
    "batches": ["b2"],
    "champion_version": "1",
    "reference_batches": ["b1"],
    "rows": {"reference": 5000, "current": 5000},
    "sample_size": 5000,
    "seed": 42,
    "reason": "drift share 0.500 >= threshold 0.3 (1/2 columns drifted: ...)",
}

OLD_CURRENT_DEPLOYMENT: dict[str, Any] = {
    "pipeline": "flights_delay",
    "version": "3",
    "model_uri": "models:/flights_delay/3",
    "pid": 4242,
    "host": "127.0.0.1",
    "port": 5055,
    "admin_port": 41000,
    "url": "http://127.0.0.1:5055/invocations",
    "log": "/data/sluice/flights_delay/deploy/server-v3-20261101T000000.log",
    "started_at": 1795000200.0,
    "smoke": {"rows": 5, "predictions": [0, 1, 0, 0, 1]},
}

OLD_VALIDATION_REPORT: dict[str, Any] = {
    "batch_id": "a1b2c3d4e5f60718",
    "status": "accepted",
    "reason": "3 of 1000 rows quarantined (0.30% <= 5.00%)",
    "rows": 1000,
    "quarantined": 3,
    "quarantine_rate": 0.003,
    "failed_checks": ["not_null dep_time: 3 rows"],
    "report": "/data/sluice/flights_delay/batches/a1b2c3d4e5f60718/validation.json",
    # The report carries more than the outcome: the checks, the schema, when.
    "checks": [{"check": "not_null", "column": "dep_time", "success": False, "unexpected_index": 3}],
    "schema": {"declared": {"dep_time": "float"}, "missing": [], "extra_dropped": [], "mismatched": {}},
    "validated_at": 1795000000.0,
}


# ------------------------------------------------------------------ one example of every record

EXAMPLES: list[Record] = [
    LandResult(new=["b1"], duplicates={"a.parquet": "b0"}, refused={"dir": "a folder"}, replaced_names={"b1": ["b0"]}),
    BatchOutcome(batch_id="b1", status=BatchStatus.REJECTED, reason="empty batch", failed_checks=["x: 1 rows"]),
    ValidationOutcomes(outcomes=[BatchOutcome(batch_id="b1", status=BatchStatus.ACCEPTED, reason="ok", rows=3)]),
    BatchAnnouncement(batches=["b1", "b2"], rows=10, quarantined=1),
    SchemaPin(
        columns=[("carrier", "string"), ("distance", "int")],
        batch_id="b1",
        source_file="m1.parquet",
        pinned_at=1.0,
        how="first accepted batch",
        guessed=["tail"],
    ),
    SchemaPin(columns=None, pinned_at=2.0, how="sluice schema-pin --reset"),
    FeatureResult(path="/f/features.parquet", key="k", batches={"b1": "sha"}, job_hash="j", rows=10, cached=True),
    TrainResult(
        mlflow_run_id="r", holdout_path="/h.parquet", split="random", train_rows=8, holdout_rows=2, features=["a"]
    ),
    FittedRows(available=80, fitted=8, fraction=0.1, setting="0.1", stratified=True, seed=42),
    Check(name="floor", passed=False, detail="candidate 0.5 >= min 0.6"),
    GateThresholds(min=0.6, max=None, max_regression_vs_champion=0.01),
    ScoredRun(run_id="r", score=0.7),
    ChampionScore(version="1", run_id="c", score=None),
    HoldoutInfo(path="/h.parquet", rows=2, split="random"),
    decode(GateDecision, OLD_DECISION),
    PromoteResult(version="2", previous=None, changed=True),
    RefitResult(
        mlflow_run_id="f",
        evaluated_run_id="r",
        trained_on=["b1", "b2"],
        rows=10,
        metric="roc_auc",
        evaluated_score=0.8,
        refit_score=0.79,
        tolerance=0.02,
        check_rows=8,
        passed=True,
    ),
    SmokeCheck(rows=2, predictions=[0.5, 1.5], inputs=[{"carrier": "UA", "distance": 1400}, {"carrier": None}]),
    ServingCheck(status=ServingStatus.RESTARTED, version="3", found=["deployed: NOT SERVING: ..."]),
    decode(LocalDeployment, OLD_CURRENT_DEPLOYMENT),
    LocalDeployResult(**OLD_CURRENT_DEPLOYMENT, changed=True, previous_version="2"),
    KubernetesDeployResult(
        version="2", previous_version=None, changed=True, deployment="ns/m", service="http://m.ns.svc:80"
    ),
    decode(DriftResult, OLD_DRIFT),
    AssetEvent(uri="sluice://p/drift", extra={"drift_share": 0.5}),
    decode(TriggerDecision, OLD_TRIGGER),
]


def test_every_record_type_has_an_example() -> None:
    """A record added to the module without an example here fails: its round trip would go untested."""
    declared = {
        obj
        for name in records.__all__
        if isinstance(obj := getattr(records, name), type) and issubclass(obj, Record) and obj is not Record
    }
    assert declared == {type(r) for r in EXAMPLES}


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_through_json(record: Record) -> None:
    text = json.dumps(encode(record))  # what XCom and the files hold
    back = decode(type(record), json.loads(text))
    assert back == record
    assert encode(back) == encode(record)


def test_a_drift_column_is_one_type_from_the_evidently_adapter_to_drift_json() -> None:
    """The adapter's per-column result is the record's column (re-exported): no copy to drift apart."""
    from sluice.services.drift import ColumnDrift as AdapterColumn

    assert ColumnDrift is AdapterColumn
    misspelt = OLD_DRIFT | {"columns": [OLD_DRIFT["columns"][0] | {"scroe": 0.2}]}
    with pytest.raises(RecordError, match=r"columns\.0\.scroe: Extra inputs are not permitted"):
        decode(DriftResult, misspelt)
    column = decode(DriftResult, OLD_DRIFT).columns[0]
    with pytest.raises(ValueError, match="frozen"):
        column.score = 0.0  # type: ignore[misc]


def test_records_are_frozen() -> None:
    outcome = BatchOutcome(batch_id="b1", status=BatchStatus.ACCEPTED, reason="ok")
    with pytest.raises(ValueError, match="frozen"):
        outcome.status = BatchStatus.REJECTED  # type: ignore[misc]


def test_enums_are_written_as_the_plain_strings_readers_know() -> None:
    decision = decode(GateDecision, OLD_DECISION)
    assert decision.verdict is GateVerdict.PASS and decision.verdict == "pass"
    assert encode(decision)["verdict"] == "pass"
    assert encode(decode(TriggerDecision, OLD_TRIGGER))["triggers"] == ["new_data", "drift"]
    assert decode(TriggerDecision, OLD_TRIGGER).triggers == [Trigger.NEW_DATA, Trigger.DRIFT]


@pytest.mark.parametrize(
    ("cls", "data", "field", "allowed"),
    [
        (GateDecision, OLD_DECISION | {"verdict": "passed"}, "verdict", "'pass' or 'fail'"),
        (
            BatchOutcome,
            {"batch_id": "b1", "status": "accpeted", "reason": "ok"},
            "status",
            "'landed', 'accepted' or 'rejected'",
        ),
        (
            DriftResult,
            OLD_DRIFT | {"status": "drifted"},
            "status",
            "'compared', 'no_reference', 'no_new_batches' or 'not_enough_data'",
        ),
        (TriggerDecision, OLD_TRIGGER | {"triggers": ["cron"]}, "triggers.0", "'manual', 'schedule', 'new_data'"),
    ],
)
def test_an_unknown_status_or_verdict_is_refused_naming_the_field_and_the_allowed_values(
    cls: type[Record], data: dict[str, Any], field: str, allowed: str
) -> None:
    with pytest.raises(RecordError) as info:
        decode(cls, data)
    message = str(info.value)
    assert f"not a valid {cls.__name__} record" in message
    assert f"{field}: " in message and allowed in message


def test_a_misspelt_or_missing_key_is_refused() -> None:
    with pytest.raises(RecordError, match=r"verdikt: Extra inputs are not permitted"):
        decode(GateDecision, OLD_DECISION | {"verdikt": "pass"})
    without_candidate = {k: v for k, v in OLD_DECISION.items() if k != "candidate"}
    with pytest.raises(RecordError, match=r"candidate: Field required"):
        decode(GateDecision, without_candidate)


# ------------------------------------------------------------------ the steps read files older runs left


def test_decision_and_drift_files_in_todays_shape_decode() -> None:
    decision = decode(GateDecision, OLD_DECISION)
    assert decision.candidate.run_id == "0b5e1c2d" and decision.champion is not None
    assert decision.champion.score == pytest.approx(0.695)
    assert [c.name for c in decision.checks] == ["floor", "vs_champion"]
    drift = decode(DriftResult, OLD_DRIFT)
    assert drift.status is DriftStatus.COMPARED
    assert [c.column for c in drift.drifted_columns()] == ["dest"]
    assert "dest Jensen-Shannon distance 0.210 (threshold 0.1)" in drift.summary()


def test_a_decision_from_before_training_sample_decodes_without_the_fitted_rows() -> None:
    """decision.json files written before training.sample have no ``fitted``; they still decode."""
    old = decode(GateDecision, OLD_DECISION)
    assert "fitted" not in OLD_DECISION and old.fitted is None
    fitted = FittedRows(available=900, fitted=100, fraction=100 / 900, setting="100", stratified=True, seed=7)
    new = decode(GateDecision, encode(old) | {"fitted": encode(fitted)})
    assert new.fitted == fitted
    assert new.fitted.describe() == "100 of 900 training rows (11.1%), stratified by the target, seed 7"


def test_the_retrain_rule_reads_an_old_trigger_file(tmp_path: Path) -> None:
    store = PipelineStore(tmp_path, "flights_delay")
    store.json.write(store.keys.run("asset_triggered__1", "trigger.json"), OLD_TRIGGER)
    found = last_retrain(store, except_run="manual__2")
    assert found is not None and found.airflow_run_id == "asset_triggered__1"
    assert found.events[0].extra["rows"] == 9
    assert last_retrain(store, except_run="asset_triggered__1") is None


def test_the_local_target_reads_an_old_deploy_record(tmp_path: Path) -> None:
    store = PipelineStore(tmp_path, "flights_delay")
    assert recorded_deployment(store) is None
    store.json.write(store.keys.deploy("current.json"), OLD_CURRENT_DEPLOYMENT)
    deployed = recorded_deployment(store)
    assert deployed is not None and (deployed.version, deployed.pid, deployed.smoke.rows) == ("3", 4242, 5)


def test_validation_returns_the_outcome_an_old_report_recorded(tmp_path: Path) -> None:
    """A batch validated by an older run is not validated again: its report (with extra keys) is the outcome."""
    store = PipelineStore(tmp_path, "flights_delay")
    batch = OLD_VALIDATION_REPORT["batch_id"]
    store.json.write(store.keys.batch(batch, "batch.json"), {"batch_id": batch, "status": "accepted"})
    store.json.write(store.keys.batch(batch, "validation.json"), OLD_VALIDATION_REPORT)
    outcome = validate_batch(store, batch, Validation(), "parquet")
    assert outcome.status is BatchStatus.ACCEPTED
    assert (outcome.quarantined, outcome.failed_checks) == (3, ["not_null dep_time: 3 rows"])
