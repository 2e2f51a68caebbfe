"""Score a fitted model on a holdout with the spec's metric.

:func:`score` scores one frame. A holdout too large to prepare at once is scored in chunks:
each chunk's :func:`outputs` (what the metric needs: probabilities or predictions) go into a
:class:`MetricFold`, which keeps them row by row up to ``exact_rows`` rows and gives the same
number as :func:`score` on the whole frame (a model scores each row on its own). Past
``exact_rows`` it folds them into a summary whose size does not grow with the rows:

* label metrics (accuracy, f1, precision, recall): counts of each (true, predicted) pair,
  weighted into scikit-learn: the same number, at any size;
* ``roc_auc``: per class, counts of positives and negatives in :data:`AUC_BINS` equal score
  bins; scores in one bin count as ties, so the value is within a bound computed from the
  counts (:attr:`MetricFold.error_bound`, under 1e-6 on the bench's 10M rows) of the exact one;
* ``log_loss``, ``rmse``, ``mae``, ``r2``: sums per chunk (``r2`` merges the true values' mean
  and spread chunk by chunk, Chan et al.), equal to the whole-array value up to rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluice.spec.models import HIGHER_IS_BETTER

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    #: An array of true values, outputs or weights, one entry (or row of class probabilities) a row.
    Values = npt.NDArray[Any]

PROBA_METRICS = {"roc_auc", "log_loss"}
LABEL_METRICS = frozenset({"accuracy", "f1", "precision", "recall"})
#: Rows whose outputs a :class:`MetricFold` keeps one by one (the exact path) before summarising.
EXACT_ROWS = 2_000_000
#: Score bins per class of the ``roc_auc`` summary (2**20: 16 MiB for a binary target).
AUC_BINS = 1 << 20


def outputs(model: Any, X: pd.DataFrame, metric: str) -> Values:
    """What ``metric`` needs of ``model`` on the rows ``X``, and nothing more.

    Returns:
        For ``roc_auc`` with two classes, the positive class's probability (one number a
        row); for the other probability metrics, every class's; otherwise the predictions.
    """
    if metric in PROBA_METRICS:
        proba: Values = model.predict_proba(X)
        if metric == "roc_auc" and proba.shape[1] == 2:
            # A copy: a view would keep the whole two-column array alive.
            return proba[:, 1].copy()
        return proba
    predicted: Values = model.predict(X)
    return predicted


def from_outputs(model: Any, y: Values, out: Values, metric: str, weight: Values | None = None) -> float:
    """``metric`` from the true values ``y`` and :func:`outputs` of ``model`` on the same rows.

    Args:
        model: The fitted model.
        y: True values.
        out: :func:`outputs` of ``model`` on the rows of ``y``.
        metric: The spec's metric.
        weight: Rows each entry stands for (label metrics only; None: one each).
    """
    from sklearn import metrics as m

    if weight is not None:
        if metric == "accuracy":
            return float(m.accuracy_score(y, out, sample_weight=weight))
        fn = {"f1": m.f1_score, "precision": m.precision_score, "recall": m.recall_score}[metric]
        average = "binary" if len(set(y)) <= 2 else "macro"
        return float(fn(y, out, average=average, zero_division=0, sample_weight=weight))
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


def score(model: Any, X: pd.DataFrame, y: Values, metric: str) -> float:
    """Return ``metric`` of ``model`` on ``(X, y)``.

    Probability metrics use ``predict_proba`` (positive class for binary targets).
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {metric}")
    return from_outputs(model, y, outputs(model, X, metric), metric)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better."""
    return HIGHER_IS_BETTER[metric]


class MetricFold:
    """``metric`` of one model over chunks of rows, in memory that stops growing at ``exact_rows``.

    Args:
        model: The fitted model (its ``classes_`` name the probability columns).
        metric: The spec's metric.
        exact_rows: Rows kept one by one; past them the outputs are summarised (see the module).
    """

    def __init__(self, model: Any, metric: str, exact_rows: int = EXACT_ROWS) -> None:
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown metric {metric}")
        self.model, self.metric, self.exact_rows = model, metric, exact_rows
        self.rows = 0
        self._kept: list[tuple[Values, Values]] = []
        self._summary: _Summary | None = None

    @property
    def summarised(self) -> bool:
        """Whether the rows outgrew ``exact_rows`` and the metric comes from the summary."""
        return self._summary is not None

    @property
    def error_bound(self) -> float:
        """How far the value can be from the exact one (0.0 unless a ``roc_auc`` was binned)."""
        return self._summary.error_bound() if self._summary is not None else 0.0

    def add(self, y: Values, out: Values) -> None:
        """Fold in the true values ``y`` and :func:`outputs` of the model on the same rows."""
        self.rows += len(y)
        if self._summary is not None:
            self._summary.add(y, out)
            return
        self._kept.append((y, out))
        if self.rows > self.exact_rows:
            self._summary = _summary_for(self.model, self.metric)
            while self._kept:
                self._summary.add(*self._kept.pop(0))

    def value(self) -> float:
        """The metric over every row added.

        Raises:
            ValueError: When no row was added.
        """
        if not self.rows:
            raise ValueError("the holdout has no rows to score")
        if self._summary is not None:
            return self._summary.value()
        y = _joined([k[0] for k in self._kept])
        out = _joined([k[1] for k in self._kept])
        return from_outputs(self.model, y, out, self.metric)

    def describe(self) -> str:
        """How the value was computed, in words (the gate record shows it)."""
        if self._summary is None:
            return f"exact, over {self.rows:,} rows"
        return f"{self._summary.method} over {self.rows:,} rows" + (
            f" (within {_rounded_up(self.error_bound)} of the exact value)" if self.error_bound else ""
        )


def _rounded_up(bound: float) -> str:
    """``bound`` to two significant digits, rounded up: the stated bound is never below the true one."""
    import math

    step = 10 ** (math.floor(math.log10(bound)) - 1)
    return f"{math.ceil(bound / step) * step:.1e}"


def _joined(pieces: list[Values]) -> Values:
    """``np.concatenate(pieces)``, emptying ``pieces`` as it copies: the peak is the result plus
    one piece, not twice the result."""
    import numpy as np

    first = pieces[0]
    out = np.empty((sum(len(p) for p in pieces), *first.shape[1:]), dtype=np.result_type(*pieces))
    at = 0
    while pieces:
        piece = pieces.pop(0)
        out[at : at + len(piece)] = piece
        at += len(piece)
    return out


class _Summary:
    """What a :class:`MetricFold` keeps past its exact rows."""

    method = ""

    def add(self, y: Values, out: Values) -> None:
        raise NotImplementedError

    def value(self) -> float:
        raise NotImplementedError

    def error_bound(self) -> float:
        return 0.0


def _summary_for(model: Any, metric: str) -> _Summary:
    if metric in LABEL_METRICS:
        return _PairCounts(model, metric)
    if metric == "roc_auc":
        return _ScoreBins(list(model.classes_))
    if metric == "log_loss":
        return _LogLossSum(list(model.classes_))
    return _ErrorSums(metric)


class _PairCounts(_Summary):
    """Counts of each (true, predicted) pair: label metrics weighted by them are the same numbers."""

    method = "counts of each (true, predicted) pair"

    def __init__(self, model: Any, metric: str) -> None:
        self.model, self.metric = model, metric
        self.counts: dict[tuple[Any, Any], int] = {}

    def add(self, y: Values, out: Values) -> None:
        import pandas as pd

        counted = pd.DataFrame({"y": y, "p": out}).value_counts(sort=False)
        for (truth, predicted), n in zip(counted.index, counted.to_numpy(), strict=True):
            self.counts[truth, predicted] = self.counts.get((truth, predicted), 0) + int(n)

    def value(self) -> float:
        import numpy as np

        pairs = list(self.counts)
        y = np.array([p[0] for p in pairs])
        pred = np.array([p[1] for p in pairs])
        return from_outputs(self.model, y, pred, self.metric, np.array([self.counts[p] for p in pairs]))


class _ScoreBins(_Summary):
    """Per class, positives and negatives counted in :data:`AUC_BINS` equal bins of its score."""

    def __init__(self, classes: list[Any]) -> None:
        import numpy as np

        self.classes = classes
        shape = (1 if len(classes) == 2 else len(classes), 2, AUC_BINS)
        self.bins = np.zeros(shape, dtype=np.int64)
        self.method = f"roc_auc from {AUC_BINS:,} score bins" + (" a class" if shape[0] > 1 else "")

    def add(self, y: Values, out: Values) -> None:
        import numpy as np

        columns = [out] if out.ndim == 1 else [out[:, k] for k in range(out.shape[1])]
        positive = [self.classes[1]] if out.ndim == 1 else self.classes
        for k, (scores, label) in enumerate(zip(columns, positive, strict=True)):
            at = np.minimum((np.asarray(scores, dtype=np.float64) * AUC_BINS).astype(np.int64), AUC_BINS - 1)
            hit = np.asarray(y) == label
            self.bins[k, 1] += np.bincount(at[hit], minlength=AUC_BINS)
            self.bins[k, 0] += np.bincount(at[~hit], minlength=AUC_BINS)

    def _per_class(self) -> list[tuple[float, float]]:
        """Each class's binned AUC (ties within a bin count one half) and its error bound."""
        import numpy as np

        out = []
        for neg, pos in self.bins:
            pairs = int(pos.sum()) * int(neg.sum())
            if not pairs:
                raise ValueError("roc_auc needs both classes among the holdout's true values")
            below = np.cumsum(neg) - neg
            twice = 2 * int((pos * below).sum()) + int((pos * neg).sum())
            out.append((twice / (2 * pairs), int((pos * neg).sum()) / (2 * pairs)))
        return out

    def value(self) -> float:
        per_class = self._per_class()
        return sum(v for v, _ in per_class) / len(per_class)

    def error_bound(self) -> float:
        per_class = self._per_class()
        return sum(b for _, b in per_class) / len(per_class)


class _LogLossSum(_Summary):
    """The summed loss of each chunk (scikit-learn's, unnormalised) and the row count."""

    method = "log_loss summed chunk by chunk"

    def __init__(self, classes: list[Any]) -> None:
        self.classes, self.total, self.rows = classes, 0.0, 0

    def add(self, y: Values, out: Values) -> None:
        from sklearn import metrics as m

        self.total += float(m.log_loss(y, out, labels=self.classes, normalize=False))
        self.rows += len(y)

    def value(self) -> float:
        return self.total / self.rows


class _ErrorSums(_Summary):
    """Sums of the errors, their squares and (for ``r2``) the true values' merged mean and spread."""

    def __init__(self, metric: str) -> None:
        self.metric, self.method = metric, f"{metric} from sums chunk by chunk"
        self.rows, self.abs_sum, self.sq_sum, self.mean, self.m2 = 0, 0.0, 0.0, 0.0, 0.0

    def add(self, y: Values, out: Values) -> None:
        import numpy as np

        y = np.asarray(y, dtype=np.float64)
        err = y - np.asarray(out, dtype=np.float64)
        self.abs_sum += float(np.abs(err).sum())
        self.sq_sum += float((err * err).sum())
        n, mean = len(y), float(y.mean())
        m2 = float(((y - mean) ** 2).sum())
        total = self.rows + n
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.rows * n / total
        self.mean += delta * n / total
        self.rows = total

    def value(self) -> float:
        import math

        if self.metric == "rmse":
            return math.sqrt(self.sq_sum / self.rows)
        if self.metric == "mae":
            return self.abs_sum / self.rows
        return 1.0 - self.sq_sum / self.m2 if self.m2 else 0.0
