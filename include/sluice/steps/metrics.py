"""Score a fitted model on a holdout with the spec's metric."""

from __future__ import annotations

from typing import Any

from sluice.spec.models import HIGHER_IS_BETTER

PROBA_METRICS = {"roc_auc", "log_loss"}


def score(model: Any, X: Any, y: Any, metric: str) -> float:
    """Return ``metric`` of ``model`` on ``(X, y)``.

    Probability metrics use ``predict_proba`` (positive class for binary targets).
    """
    from sklearn import metrics as m

    if metric in PROBA_METRICS:
        proba = model.predict_proba(X)
        if metric == "roc_auc":
            if proba.shape[1] == 2:
                return float(m.roc_auc_score(y, proba[:, 1]))
            return float(m.roc_auc_score(y, proba, multi_class="ovr"))
        return float(m.log_loss(y, proba, labels=list(model.classes_)))
    pred = model.predict(X)
    if metric == "accuracy":
        return float(m.accuracy_score(y, pred))
    if metric in {"f1", "precision", "recall"}:
        fn = {"f1": m.f1_score, "precision": m.precision_score, "recall": m.recall_score}[metric]
        average = "binary" if len(set(y)) <= 2 else "macro"
        return float(fn(y, pred, average=average, zero_division=0))
    if metric == "r2":
        return float(m.r2_score(y, pred))
    if metric == "rmse":
        return float(m.root_mean_squared_error(y, pred))
    if metric == "mae":
        return float(m.mean_absolute_error(y, pred))
    raise ValueError(f"unknown metric {metric}")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better."""
    return HIGHER_IS_BETTER[metric]
