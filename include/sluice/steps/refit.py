"""Refit the accepted candidate on train + holdout before it is promoted (``training.refit: after_gate``).

The gate judges a candidate on rows it has not seen: with a time-ordered split those are the
latest batch, so the evaluated model never learnt from it. With ``after_gate``, once the
candidate has passed the gate (and approval, when there is one), the same estimator with the
same parameters is fitted on the training rows plus the holdout, and that model is promoted.

The gate's decision record stays the evaluated model's: the refit is never scored on the
holdout (it has seen it). Instead it must not be worse than the evaluated model on the rows
the evaluated model was fitted on (a seeded sample of up to 20,000 of them, the rows of its
``train_<metric>``): its score there may be worse by at most ``training.refit_tolerance`` of
the evaluated score (relative; default 2%). A worse refit blocks promotion: the champion is
kept and the task fails with the numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.services import faults
from sluice.services.storage import PipelineStore
from sluice.spec.loader import LoadedSpec
from sluice.steps.evaluate import DECISION, load_sklearn_model
from sluice.steps.lineage import EVALUATED_RUN, batch_tags
from sluice.steps.records import FeatureResult, GateDecision, GateVerdict, RefitResult, TrainResult, encode
from sluice.steps.train import (
    SplitRows,
    log_model,
    log_validation_reports,
    make_estimator,
    prepare,
    split_rows,
    train_metric_sample,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: ``sluice.role`` of a refit run.
ROLE = "refit"
#: Tag of a refit run: ``passed`` or ``worse`` (the check against the evaluated model).
CHECK_TAG = "sluice.refit.check"
#: Tags of the evaluated run that do not describe the refit (its role, gate, batches, split).
NOT_COPIED = ("sluice.role", "sluice.gate.", "sluice.batches", "sluice.split", "sluice.abandoned_by")


class RefitWorse(RuntimeError):
    """The refit scores worse than the evaluated model beyond the tolerance; nothing is promoted."""


def not_worse(metric: str, evaluated: float, refit: float, tolerance: float) -> bool:
    """Whether ``refit`` is within ``tolerance`` (a share of ``|evaluated|``) of ``evaluated`` or better."""
    from sluice.steps.metrics import higher_is_better

    allowed = tolerance * abs(evaluated)
    return refit >= evaluated - allowed if higher_is_better(metric) else refit <= evaluated + allowed


def refit_candidate(
    loaded: LoadedSpec,
    store: PipelineStore,
    features: FeatureResult,
    trained: TrainResult,
    decision: GateDecision,
    dag_id: str,
    airflow_run_id: str,
) -> RefitResult:
    """Fit the gated candidate's estimator again on train + holdout, check it and log it to MLflow.

    The refit run carries the evaluated run's lineage, ``sluice.evaluated_run_id``, the path of
    the gate's decision record (referenced, not recomputed), ``sluice.batches.trained_on`` =
    every batch of the window and ``sluice.batches.held_out`` = none. ``promote`` registers it.
    A retry finds the finished refit run of this evaluated run and returns it (or fails again
    with the same numbers): a retry never fits or registers a second model.

    Raises:
        RefitWorse: The refit is worse than the evaluated model on its training rows.
        ValueError: The decision is not a pass, or is not about this candidate, or the spec
            changed since the candidate was trained (the refit would not be the same model).
    """
    from sluice.services import tracking

    spec = loaded.spec
    evaluated_id = trained.mlflow_run_id
    if decision.verdict != GateVerdict.PASS:
        raise ValueError("refit called with a failed gate decision")
    if decision.candidate.run_id != evaluated_id:
        raise ValueError(
            f"the gate decided on run {decision.candidate.run_id}, not on the trained candidate {evaluated_id}"
        )
    client = tracking.configure(loaded.project_dir)
    experiment_id = tracking.ensure_experiment(client, spec.pipeline, loaded.project_dir)
    previous = _finished_refit(client, experiment_id, evaluated_id)
    if previous is not None:
        result = _result_of(previous, spec.evaluation.metric)
        log.info("refit run %s of candidate %s already finished: reused", result.mlflow_run_id, evaluated_id)
    else:
        evaluated_tags = client.get_run(evaluated_id).data.tags
        if evaluated_tags.get("sluice.spec_hash", loaded.spec_hash) != loaded.spec_hash:
            raise ValueError(
                f"{loaded.path.name} changed since candidate {evaluated_id} was trained: a refit would not be "
                "the model the gate passed; re-run the train DAG"
            )
        for closed in tracking.close_abandoned_runs(client, experiment_id, ROLE, airflow_run_id):
            log.warning("closed MLflow run %s as KILLED: a killed refit task left it RUNNING", closed)
        result = _refit_and_log(loaded, store, features, decision, evaluated_tags, experiment_id, dag_id)
    if not result.passed:
        champion = f"champion v{decision.champion.version} kept" if decision.champion else "no champion yet"
        raise RefitWorse(
            f"refit of {spec.pipeline} is worse than the evaluated candidate on the candidate's own training rows: "
            f"{result.metric} {result.refit_score:.4f} vs {result.evaluated_score:.4f} on {result.check_rows} rows "
            f"(refit_tolerance {result.tolerance:g} of the evaluated score); nothing promoted, {champion}. "
            f"Refit run {result.mlflow_run_id}, evaluated run {evaluated_id}. Look for a holdout batch whose "
            "labels disagree with the older data, or set training.refit: none to promote the evaluated model"
        )
    return result


def _finished_refit(client: Any, experiment_id: str, evaluated_id: str) -> Any:
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`sluice.role` = '{ROLE}' and tags.`{EVALUATED_RUN}` = '{evaluated_id}' "
            "and attributes.status = 'FINISHED'"
        ),
        max_results=1,
    )
    return runs[0] if runs else None


def _result_of(run: Any, metric: str) -> RefitResult:
    """The result recorded on a finished refit run."""
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    return RefitResult(
        mlflow_run_id=run.info.run_id,
        evaluated_run_id=tags[EVALUATED_RUN],
        trained_on=[b for b in tags.get("sluice.batches.trained_on", "").split(",") if b],
        rows=int(params.get("train_rows", 0)),
        metric=metric,
        evaluated_score=float(metrics[f"refit_check_evaluated_{metric}"]),
        refit_score=float(metrics[f"refit_check_{metric}"]),
        tolerance=float(params.get("refit_tolerance", 0.0)),
        check_rows=int(params.get("refit_check_rows", 0)),
        passed=tags.get(CHECK_TAG) == "passed",
    )


@dataclass(frozen=True)
class _Refit:
    """A refitted estimator and its check against the evaluated model (inside this module only)."""

    estimator: Any
    X_all: pd.DataFrame
    rows: SplitRows
    evaluated_score: float
    refit_score: float
    check_rows: int
    passed: bool


def _refit_and_check(loaded: LoadedSpec, store: PipelineStore, features: FeatureResult, evaluated_id: str) -> _Refit:
    """Fit on train + holdout; score it and the evaluated model on the evaluated model's training rows."""
    import numpy as np
    import pandas as pd

    from sluice.steps.metrics import score

    spec = loaded.spec
    metric = spec.evaluation.metric
    rows = split_rows(loaded, store, features)
    target = spec.training.target
    # The training rows first, then the holdout: the rows the candidate was fitted on (its
    # training.sample, if any) plus the held-out ones, in the order a fit on both reads them.
    X_all = pd.concat([prepare(rows.train, rows.columns), prepare(rows.holdout, rows.columns)], ignore_index=True)
    y_train = rows.train[target].to_numpy()
    y_all = np.concatenate([y_train, rows.holdout[target].to_numpy()])
    estimator = make_estimator(spec.training.model, spec.training.params, X_all)
    estimator.fit(X_all, y_all)

    picked = train_metric_sample(len(y_train))
    X_check, y_check = X_all.iloc[picked], y_train[picked]
    evaluated_score = score(load_sklearn_model(f"runs:/{evaluated_id}/model"), X_check, y_check, metric)
    refit_score = score(estimator, X_check, y_check, metric)
    passed = not_worse(metric, evaluated_score, refit_score, spec.training.refit_tolerance)
    return _Refit(estimator, X_all, rows, evaluated_score, refit_score, len(picked), passed)


def _refit_tags(
    store: PipelineStore,
    decision: GateDecision,
    evaluated_tags: dict[str, str],
    trained_on: list[str],
    window: list[str],
    split: str,
) -> dict[str, str]:
    """The refit run's tags: the evaluated run's lineage, the link to it and to its gate record, its batches."""
    evaluated_id = decision.candidate.run_id
    tags = {k: v for k, v in evaluated_tags.items() if k.startswith("sluice.") and not k.startswith(NOT_COPIED)}
    return tags | {
        "sluice.role": ROLE,
        EVALUATED_RUN: evaluated_id,
        **batch_tags(trained_on, [], window),
        "sluice.split": f"refit on train + holdout after the gate (the gate's holdout: {split})",
        "sluice.gate.decision": store.location(store.keys.run(decision.airflow_run_id, DECISION)),
        "sluice.gate.decision_artifact": f"runs:/{evaluated_id}/gate/decision.json",
        "sluice.airflow_run_id": decision.airflow_run_id,
    }


def _refit_and_log(
    loaded: LoadedSpec,
    store: PipelineStore,
    features: FeatureResult,
    decision: GateDecision,
    evaluated_tags: dict[str, str],
    experiment_id: str,
    dag_id: str,
) -> RefitResult:
    """Refit and check (:func:`_refit_and_check`), then log the refit run; its model only when it passed."""
    import mlflow

    spec = loaded.spec
    metric = spec.evaluation.metric
    evaluated_id = decision.candidate.run_id
    refit = _refit_and_check(loaded, store, features, evaluated_id)
    window = list(features.batches)
    fitted_on = set(refit.rows.trained_on) | set(refit.rows.held_out)
    trained_on = [b for b in window if b in fitted_on]
    tags = _refit_tags(store, decision, evaluated_tags, trained_on, window, refit.rows.split) | {
        "sluice.airflow_dag_id": dag_id
    }
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"refit {decision.airflow_run_id}", tags=tags) as run:
        faults.point("refit.run_started")
        mlflow.log_params(
            {
                "model": spec.training.model,
                **{f"param.{k}": v for k, v in spec.training.params.items()},
                "train_rows": len(refit.X_all),
                "holdout_rows": 0,
                "n_features": len(refit.rows.columns),
                "refit_tolerance": spec.training.refit_tolerance,
                "refit_check_rows": refit.check_rows,
            }
        )
        mlflow.log_metric(f"refit_check_evaluated_{metric}", refit.evaluated_score)
        mlflow.log_metric(f"refit_check_{metric}", refit.refit_score)
        log_validation_reports(store, window)
        mlflow.log_dict(
            {"batches": features.batches, "features": encode(features), "evaluated_run_id": evaluated_id, "tags": tags},
            "lineage.json",
        )
        if refit.passed:
            # A worse refit is never served: its numbers are kept, its model is not.
            log_model(refit.estimator, refit.X_all.head(5))
        mlflow.set_tag(CHECK_TAG, "passed" if refit.passed else "worse")
        run_id = str(run.info.run_id)
    faults.point("refit.run_finished")
    return RefitResult(
        mlflow_run_id=run_id,
        evaluated_run_id=evaluated_id,
        trained_on=trained_on,
        rows=len(refit.X_all),
        metric=metric,
        evaluated_score=refit.evaluated_score,
        refit_score=refit.refit_score,
        tolerance=spec.training.refit_tolerance,
        check_rows=refit.check_rows,
        passed=refit.passed,
    )
