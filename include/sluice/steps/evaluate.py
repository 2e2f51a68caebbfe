"""Score candidate and champion on the same holdout and decide the gate."""

from __future__ import annotations

import tempfile
import time
from typing import Any

from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec
from sluice.steps.records import (
    ChampionScore,
    GateDecision,
    GateThresholds,
    GateVerdict,
    HoldoutInfo,
    ScoredRun,
    TrainResult,
    decode,
    encode,
)
from sluice.steps.records import Check as Check
from sluice.steps.train import prepare, quiet_skops_module_scan, read_holdout

#: The gate's decision record, in the train run's folder.
DECISION = "decision.json"


class GateFailed(RuntimeError):
    """The candidate did not pass the gate; the champion stays."""


def load_sklearn_model(uri: str) -> Any:
    """Load a scikit-learn model from MLflow into memory, leaving no download behind.

    MLflow downloads a model into a fresh temporary folder it never removes; a worker that
    gates every month would fill its disk with copies. The model is read whole, so the
    folder goes at once.

    Args:
        uri: ``runs:/<id>/model`` or ``models:/<name>/<version>``.
    """
    import mlflow.sklearn

    with tempfile.TemporaryDirectory(prefix="sluice-model-") as folder, quiet_skops_module_scan():
        return mlflow.sklearn.load_model(uri, dst_path=folder)


def _champion_columns(model: Any) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    return list(names) if names is not None else []


def evaluate_candidate(
    loaded: LoadedSpec, store: PipelineStore, trained: TrainResult, airflow_run_id: str
) -> GateDecision:
    """Score the candidate and the current champion on the candidate's holdout; decide.

    With no champion yet, only the absolute floor applies. A champion that cannot be
    scored on this holdout (its columns are missing) fails the gate: replacing a model
    that cannot be compared would be a blind swap.

    Returns:
        The decision record (also written to the run folder and the MLflow run).
    """

    from sluice.services import tracking
    from sluice.steps.metrics import higher_is_better, score

    spec = loaded.spec
    record_key = store.run_key(airflow_run_id, DECISION)
    recorded = store.read_json_or_none(record_key)
    if recorded is not None:
        existing = decode(GateDecision, recorded)
        if existing.candidate.run_id == trained.mlflow_run_id:
            return existing
    client = tracking.configure(loaded.project_dir)
    metric = spec.evaluation.metric
    gate = spec.evaluation.gate
    holdout = read_holdout(store, trained.holdout_path)
    y = holdout[spec.training.target].to_numpy()

    candidate = load_sklearn_model(f"runs:/{trained.mlflow_run_id}/model")
    cand_score = score(candidate, prepare(holdout, _champion_columns(candidate) or trained.features), y, metric)
    checks = _bound_checks(cand_score, metric, gate.min, gate.max)
    champion, check = _versus_champion(loaded, tracking.champion(client, spec.pipeline), holdout, y, cand_score)
    checks.append(check)
    failed = [c for c in checks if not c.passed]
    decision = GateDecision(
        pipeline=spec.pipeline,
        verdict=GateVerdict.FAIL if failed else GateVerdict.PASS,
        reason="; ".join(("FAILED " if not c.passed else "") + c.detail for c in (failed or checks)),
        metric=metric,
        higher_is_better=higher_is_better(metric),
        thresholds=GateThresholds(
            min=gate.min, max=gate.max, max_regression_vs_champion=gate.max_regression_vs_champion
        ),
        candidate=ScoredRun(run_id=trained.mlflow_run_id, score=cand_score, trained_on=trained.trained_on),
        champion=champion,
        holdout=HoldoutInfo(
            path=trained.holdout_path, rows=len(holdout), split=trained.split, batches=trained.held_out
        ),
        checks=checks,
        airflow_run_id=airflow_run_id,
        decided_at=time.time(),
        fitted=trained.fitted,
    )
    _log_decision(decision, trained.mlflow_run_id)
    store.write_json(record_key, encode(decision))
    return decision


def _bound_checks(cand_score: float, metric: str, floor: float | None, ceiling: float | None) -> list[Check]:
    """The absolute bounds of the gate (``gate.min``, ``gate.max``) that the spec sets."""
    checks = []
    if floor is not None:
        checks.append(
            Check(
                name="floor", passed=cand_score >= floor, detail=f"candidate {metric} {cand_score:.4f} >= min {floor}"
            )
        )
    if ceiling is not None:
        checks.append(
            Check(
                name="ceiling",
                passed=cand_score <= ceiling,
                detail=f"candidate {metric} {cand_score:.4f} <= max {ceiling}",
            )
        )
    return checks


def _versus_champion(
    loaded: LoadedSpec, champ: Any, holdout: Any, y: Any, cand_score: float
) -> tuple[ChampionScore | None, Check]:
    """Score the champion on the candidate's holdout and compare (a champion that cannot be scored fails)."""

    from sluice.steps.metrics import higher_is_better, score

    if champ is None:
        detail = "no champion yet: the first model that passes the floor becomes champion"
        return None, Check(name="champion", passed=True, detail=detail)
    spec = loaded.spec
    metric = spec.evaluation.metric
    champ_model = load_sklearn_model(f"models:/{spec.pipeline}/{champ.version}")
    columns = _champion_columns(champ_model)
    missing = [c for c in columns if c not in holdout.columns]
    if missing:
        detail = f"champion v{champ.version} cannot be scored on this holdout: missing columns {missing}"
        return ChampionScore(version=str(champ.version), run_id=champ.run_id), Check(
            name="champion", passed=False, detail=detail
        )
    champ_score = score(champ_model, prepare(holdout, columns), y, metric)
    allowed = spec.evaluation.gate.max_regression_vs_champion
    if higher_is_better(metric):
        ok = cand_score >= champ_score - allowed
        detail = f"candidate {cand_score:.4f} >= champion {champ_score:.4f} - {allowed}"
    else:
        ok = cand_score <= champ_score + allowed
        detail = f"candidate {cand_score:.4f} <= champion {champ_score:.4f} + {allowed}"
    champion = ChampionScore(version=str(champ.version), run_id=champ.run_id, score=champ_score)
    return champion, Check(name="vs_champion", passed=ok, detail=detail)


def _log_decision(decision: GateDecision, run_id: str) -> None:
    """The gate's numbers, verdict and record on the candidate's MLflow run."""
    import mlflow

    metric = decision.metric
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metric(f"gate_candidate_{metric}", decision.candidate.score)
        if decision.champion and decision.champion.score is not None:
            mlflow.log_metric(f"gate_champion_{metric}", decision.champion.score)
        mlflow.set_tag("sluice.gate.verdict", str(decision.verdict))
        mlflow.set_tag("sluice.gate.reason", decision.reason[:5000])
        mlflow.log_dict(encode(decision), "gate/decision.json")


def enforce_gate(decision: GateDecision) -> None:
    """Raise :class:`GateFailed` with the numbers when the verdict is ``fail``."""
    if decision.verdict != GateVerdict.PASS:
        raise GateFailed(f"gate failed for {decision.pipeline}: {decision.reason}; champion kept")
