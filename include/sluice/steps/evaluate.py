"""Score candidate and champion on the same holdout and decide the gate."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec
from sluice.steps.metrics import EXACT_ROWS, MetricFold
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
from sluice.steps.train import (
    SCORE_CHUNK_ROWS,
    holdout_columns,
    prepare,
    quiet_skops_module_scan,
    read_holdout_chunks,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

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

    The holdout is read :data:`~sluice.steps.train.SCORE_CHUNK_ROWS` rows at a time, only the
    columns the models and the metric read; each chunk is prepared and scored by both models,
    and what the metric needs of it goes into a :class:`~sluice.steps.metrics.MetricFold`: exact
    up to :data:`~sluice.steps.metrics.EXACT_ROWS` rows, past them a summary of fixed size
    (``holdout.scored`` says which).

    Returns:
        The decision record (also written to the run folder and the MLflow run).
    """

    from sluice.services import tracking
    from sluice.steps.metrics import higher_is_better

    spec = loaded.spec
    record_key = store.keys.run(airflow_run_id, DECISION)
    recorded = store.json.read_or_none(record_key)
    if recorded is not None:
        existing = decode(GateDecision, recorded)
        if existing.candidate.run_id == trained.mlflow_run_id:
            return existing
    client = tracking.configure(loaded.project_dir)
    metric = spec.evaluation.metric
    gate = spec.evaluation.gate
    champ = tracking.champion(client, spec.pipeline)
    rows, unscorable, method, cand_score, champ_score = _score_both(loaded, store, trained, champ)
    checks = _bound_checks(cand_score, metric, gate.min, gate.max)
    champion, check = _versus_champion(loaded, champ, unscorable, champ_score, cand_score)
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
            path=trained.holdout_path, rows=rows, split=trained.split, batches=trained.held_out, scored=method
        ),
        checks=checks,
        airflow_run_id=airflow_run_id,
        decided_at=time.time(),
        fitted=trained.fitted,
    )
    _log_decision(decision, trained.mlflow_run_id)
    store.json.write(record_key, encode(decision))
    return decision


def _score_both(
    loaded: LoadedSpec, store: PipelineStore, trained: TrainResult, champ: Any
) -> tuple[int, str | None, str, float, float | None]:
    """Holdout rows, why the champion cannot be scored (or None), how the metric was computed,
    and both scores, read once in chunks."""
    spec = loaded.spec
    available, rows = holdout_columns(store, trained.holdout_path)
    candidate = load_sklearn_model(f"runs:/{trained.mlflow_run_id}/model")
    scorers = [(candidate, _champion_columns(candidate) or trained.features)]
    champ_model, unscorable = _champion_model(loaded, champ, available)
    if champ_model is not None:
        scorers.append((champ_model, _champion_columns(champ_model)))
    chunks = read_holdout_chunks(
        store, trained.holdout_path, _columns_read(scorers, spec.training.target), SCORE_CHUNK_ROWS
    )
    folds = fold_chunks(scorers, chunks, spec.training.target, spec.evaluation.metric)
    if folds[0].summarised:
        log.info("holdout of %d rows scored: %s", rows, "; ".join(f.describe() for f in folds))
    scores = [fold.value() for fold in folds]
    return rows, unscorable, folds[0].describe(), scores[0], (scores[1] if champ_model is not None else None)


def score_chunks(
    scorers: list[tuple[Any, list[str]]], chunks: Iterable[pd.DataFrame], target: str, metric: str
) -> list[float]:
    """``metric`` of each ``(model, columns)`` over every row of ``chunks``, read once.

    Raises:
        ValueError: When ``chunks`` holds no row.
    """
    return [fold.value() for fold in fold_chunks(scorers, chunks, target, metric)]


def fold_chunks(
    scorers: list[tuple[Any, list[str]]],
    chunks: Iterable[pd.DataFrame],
    target: str,
    metric: str,
    exact_rows: int = EXACT_ROWS,
) -> list[MetricFold]:
    """Each ``(model, columns)``'s :class:`~sluice.steps.metrics.MetricFold` over every row of ``chunks``, read once.

    Each chunk is prepared for each model (its columns, :func:`~sluice.steps.train.prepare`)
    and scored; only the chunk's true values and the models' :func:`~sluice.steps.metrics.outputs`
    go into the folds: up to ``exact_rows`` rows the same numbers as scoring the chunks
    concatenated, past them a summary that stops growing.

    Args:
        scorers: Fitted models and the columns each reads.
        chunks: Frames with the ``target`` column and every model's columns.
        target: The column of true values.
        metric: The spec's metric.
        exact_rows: Rows kept one by one before the folds summarise.
    """
    from sluice.steps.metrics import outputs

    folds = [MetricFold(model, metric, exact_rows) for model, _ in scorers]
    for chunk in chunks:
        y = chunk[target].to_numpy()
        for fold, (model, columns) in zip(folds, scorers, strict=True):
            fold.add(y, outputs(model, prepare(chunk, columns), metric))
        del chunk  # before the reader decodes the next one
    return folds


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


def _champion_model(loaded: LoadedSpec, champ: Any, available: list[str]) -> tuple[Any, str | None]:
    """The champion's model, or why it cannot be scored on a holdout with the columns ``available``.

    Returns:
        ``(model, None)``; ``(None, reason)`` for a champion whose columns are missing;
        ``(None, None)`` without a champion.
    """
    if champ is None:
        return None, None
    model = load_sklearn_model(f"models:/{loaded.spec.pipeline}/{champ.version}")
    missing = [c for c in _champion_columns(model) if c not in set(available)]
    if missing:
        return None, f"champion v{champ.version} cannot be scored on this holdout: missing columns {missing}"
    return model, None


def _versus_champion(
    loaded: LoadedSpec, champ: Any, unscorable: str | None, champ_score: float | None, cand_score: float
) -> tuple[ChampionScore | None, Check]:
    """Compare the candidate's score with the champion's on the same holdout (a champion that
    cannot be scored fails)."""

    from sluice.steps.metrics import higher_is_better

    if champ is None:
        detail = "no champion yet: the first model that passes the floor becomes champion"
        return None, Check(name="champion", passed=True, detail=detail)
    if unscorable is not None or champ_score is None:
        return ChampionScore(version=str(champ.version), run_id=champ.run_id), Check(
            name="champion", passed=False, detail=unscorable or f"champion v{champ.version} was not scored"
        )
    spec = loaded.spec
    metric = spec.evaluation.metric
    allowed = spec.evaluation.gate.max_regression_vs_champion
    if higher_is_better(metric):
        ok = cand_score >= champ_score - allowed
        detail = f"candidate {cand_score:.4f} >= champion {champ_score:.4f} - {allowed}"
    else:
        ok = cand_score <= champ_score + allowed
        detail = f"candidate {cand_score:.4f} <= champion {champ_score:.4f} + {allowed}"
    champion = ChampionScore(version=str(champ.version), run_id=champ.run_id, score=champ_score)
    return champion, Check(name="vs_champion", passed=ok, detail=detail)


def _columns_read(scorers: list[tuple[Any, list[str]]], target: str) -> list[str]:
    """Every column a scorer reads, and the target, each once."""
    return list(dict.fromkeys([target, *(c for _, columns in scorers for c in columns)]))


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
