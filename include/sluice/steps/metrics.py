"""Score a fitted model on a holdout with the spec's metric.

:func:`score` scores one frame. A holdout too large to prepare at once is scored in chunks
with :func:`outputs` (what the metric needs of each chunk: probabilities or predictions),
then :func:`from_outputs` over the chunks' outputs joined: the same number as :func:`score`
on the whole frame, since a model scores each row on its own.
"""

from __future__ import annotations

from typing import Any

from sluice.spec.models import HIGHER_IS_BETTER

PROBA_METRICS = {"roc_auc", "log_loss"}


def outputs(model: Any, X: Any, metric: str) -> Any:
    """What ``metric`` needs of ``model`` on the rows ``X``, and nothing more.

    Returns:
        For ``roc_auc`` with two classes, the positive class's probability (one number a
        row); for the other probability metrics, every class's; otherwise the predictions.
    """
    if metric in PROBA_METRICS:
        proba = model.predict_proba(X)
        if metric == "roc_auc" and proba.shape[1] == 2:
            # A copy: a view would keep the whole two-column array alive.
            return proba[:, 1].copy()
        return proba
    return model.predict(X)


def from_outputs(model: Any, y: Any, out: Any, metric: str) -> float:
    """``metric`` from the true values ``y`` and :func:`outputs` of ``model`` on the same rows."""
    from sklearn import metrics as m

    if metric == "roc_auc":
        if out.ndim == 1:
            return float(m.roc_auc_score(y, out))
        return float(m.roc_auc_score(y, out, multi_class="ovr"))
    if metric == "log_loss":
        return float(m.log_loss(y, out, labels=list(model.classes_)))
    if metric == "accuracy":
        return float(m.accuracy_score(y, out))
    if metric in {"f1", "precision", "recall"}:
        fn = {"f1": m.f1_score, "precision": m.precision_score, "recall": m.recall_score}[metric]
        average = "binary" if len(set(y)) <= 2 else "macro"
        return float(fn(y, out, average=average, zero_division=0))
    if metric == "r2":
        return float(m.r2_score(y, out))
    if metric == "rmse":
        return float(m.root_mean_squared_error(y, out))
    if metric == "mae":
        return float(m.mean_absolute_error(y, out))
    raise ValueError(f"unknown metric {metric}")


def score(model: Any, X: Any, y: Any, metric: str) -> float:
    """Return ``metric`` of ``model`` on ``(X, y)``.

    Probability metrics use ``predict_proba`` (positive class for binary targets).
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric}")
    return from_outputs(model, y, outputs(model, X, metric), metric)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better."""
    return HIGHER_IS_BETTER[metric]
